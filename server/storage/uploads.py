"""The uploads repository: every SQL statement about uploads and their parts.

Functions take the connection of the caller's transaction; rows leave as `Upload` models.
State changes are conditional (`WHERE state = ANY(expected)`), so running one twice changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from server.model.failures import Failure
from server.model.names import version_name
from server.model.uploads import Upload, UploadPart, UploadState

_SELECT = """
    SELECT u.*, n.name AS namespace_name, d.name AS dataset_name,
           (SELECT coalesce(jsonb_agg(jsonb_build_array(p.number, p.offset_bytes, p.size_bytes, p.etag, p.crc32c)
                                      ORDER BY p.number), '[]'::jsonb)
            FROM upload_parts p WHERE p.upload_id = u.id) AS part_rows
    FROM uploads u
    JOIN namespaces n ON n.id = u.namespace_id
    JOIN datasets d ON d.id = u.dataset_id
"""


def _upload(row: asyncpg.Record) -> Upload:
    version = None
    if row["version_id"] is not None:
        version = version_name(row["namespace_name"], row["dataset_name"], row["version_id"])
    return Upload(
        id=row["id"], namespace=row["namespace_name"], namespace_id=row["namespace_id"],
        dataset=row["dataset_name"], dataset_id=row["dataset_id"], path=row["path"],
        declared_size=row["declared_size"], declared_sha256=row["declared_sha256"],
        content_type=row["content_type"], auto_commit=row["auto_commit"], commit_message=row["commit_message"],
        state=UploadState(row["state"]), part_size=row["part_size"], staging_key=row["staging_key"],
        store_upload_id=row["store_upload_id"], size=row["size_bytes"], sha256=row["sha256"],
        failure=Failure.from_json(row["failure"]), version_id=row["version_id"], version_name=version,
        expire_time=row["expire_time"], create_time=row["create_time"], update_time=row["update_time"],
        parts=tuple(UploadPart(number, offset, size, etag, crc) for number, offset, size, etag, crc
                    in row["part_rows"]),
    )


async def insert(connection: asyncpg.Connection, *, upload_id: uuid.UUID, namespace_id: uuid.UUID,
                 dataset_id: uuid.UUID, path: str, declared_size: int | None, declared_sha256: str | None,
                 content_type: str, auto_commit: bool, commit_message: str, part_size: int, staging_key: str,
                 store_upload_id: str, request_id: str | None, expiry_seconds: float) -> Upload:
    """Insert an OPEN upload."""
    await connection.execute(
        """INSERT INTO uploads (id, namespace_id, dataset_id, path, declared_size, declared_sha256, content_type,
                                auto_commit, commit_message, part_size, staging_key, store_upload_id, request_id,
                                expire_time)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, now() + make_interval(secs => $14))""",
        upload_id, namespace_id, dataset_id, path, declared_size, declared_sha256, content_type, auto_commit,
        commit_message, part_size, staging_key, store_upload_id, request_id, expiry_seconds)
    found = await get(connection, upload_id)
    assert found is not None
    return found


async def get(connection: asyncpg.Connection, upload_id: uuid.UUID, *, for_update: bool = False) -> Upload | None:
    """One upload with its parts; `for_update` locks the row until the transaction ends."""
    if for_update:
        await connection.execute("SELECT 1 FROM uploads WHERE id = $1 FOR UPDATE", upload_id)
    row = await connection.fetchrow(_SELECT + " WHERE u.id = $1", upload_id)
    return None if row is None else _upload(row)


async def find_by_request_id(connection: asyncpg.Connection, namespace_id: uuid.UUID, request_id: str) -> Upload | None:
    """The upload an earlier create with this request_id made."""
    row = await connection.fetchrow(_SELECT + " WHERE u.namespace_id = $1 AND u.request_id = $2",
                                    namespace_id, request_id)
    return None if row is None else _upload(row)


async def count_open(connection: asyncpg.Connection, namespace_id: uuid.UUID) -> int:
    """How many OPEN uploads the namespace has."""
    return int(await connection.fetchval(
        "SELECT count(*) FROM uploads WHERE namespace_id = $1 AND state = 'OPEN'", namespace_id))


async def record_part(connection: asyncpg.Connection, upload_id: uuid.UUID, part: UploadPart,
                      expiry_seconds: float) -> str:
    """Record a written part of an OPEN upload and push its expiry back.

    Returns "recorded", "exists" (the same part was recorded before: a retry), "conflict" (another stream
    recorded different bytes for this part) or "not-open".
    """
    async with connection.transaction():
        state = await connection.fetchval(
            """UPDATE uploads SET expire_time = greatest(expire_time, now() + make_interval(secs => $2))
               WHERE id = $1 AND state = 'OPEN' RETURNING state""", upload_id, expiry_seconds)
        if state is None:
            return "not-open"
        inserted = await connection.fetchval(
            """INSERT INTO upload_parts (upload_id, number, offset_bytes, size_bytes, etag, crc32c)
               VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (upload_id, number) DO NOTHING RETURNING number""",
            upload_id, part.number, part.offset, part.size, part.etag, part.crc32c)
        if inserted is not None:
            return "recorded"
        existing = await connection.fetchrow(
            "SELECT size_bytes, crc32c FROM upload_parts WHERE upload_id = $1 AND number = $2", upload_id, part.number)
        same = existing is not None and existing["size_bytes"] == part.size and existing["crc32c"] == part.crc32c
        if same:
            # The same bytes again (a retried stream): the store holds them under the newest etag.
            await connection.execute("UPDATE upload_parts SET etag = $3 WHERE upload_id = $1 AND number = $2",
                                     upload_id, part.number, part.etag)
            return "exists"
        return "conflict"


async def part_exists(connection: asyncpg.Connection, upload_id: uuid.UUID, number: int) -> bool:
    """Whether part `number` of the upload is recorded."""
    return bool(await connection.fetchval(
        "SELECT EXISTS (SELECT 1 FROM upload_parts WHERE upload_id = $1 AND number = $2)", upload_id, number))


async def transition(connection: asyncpg.Connection, upload_id: uuid.UUID, expected: Iterable[UploadState],
                     state: UploadState, **fields: Any) -> bool:
    """Move to `state` if the upload is in one of `expected`, setting `fields`; False if it was not."""
    assignments = ["state = $3", "update_time = now()"]
    values: list[Any] = [upload_id, [s.value for s in expected], state.value]
    for column, value in fields.items():
        if column == "failure" and isinstance(value, Failure):
            value = value.to_json()
        values.append(value)
        assignments.append(f"{column} = ${len(values)}")
    if "failure" not in fields and state != UploadState.FAILED:
        assignments.append("failure = NULL")
    changed = await connection.fetchval(
        f"UPDATE uploads SET {', '.join(assignments)} WHERE id = $1 AND state = ANY($2::text[]) RETURNING id",
        *values)
    return changed is not None


async def count_by_state(connection: asyncpg.Connection) -> dict[str, int]:
    """How many uploads are in each state, across namespaces."""
    rows = await connection.fetch("SELECT state, count(*) AS n FROM uploads GROUP BY state")
    return {row["state"]: int(row["n"]) for row in rows}


async def mark_purged(connection: asyncpg.Connection, upload_id: uuid.UUID) -> None:
    """Note that the staged bytes of a cancelled or expired upload are gone."""
    await connection.execute("UPDATE uploads SET purge_time = now() WHERE id = $1", upload_id)


async def delete(connection: asyncpg.Connection, upload_id: uuid.UUID) -> None:
    """Remove an upload and its parts (only for a creation that is being rolled back)."""
    await connection.execute("DELETE FROM uploads WHERE id = $1", upload_id)


async def page(connection: asyncpg.Connection, namespace_id: uuid.UUID, *, states: Sequence[str] | None,
               dataset: str | None, after: tuple[datetime, uuid.UUID] | None, limit: int) -> list[Upload]:
    """Uploads of a namespace, newest first, after a keyset position."""
    conditions = ["u.namespace_id = $1"]
    values: list[Any] = [namespace_id]
    if states:
        values.append(list(states))
        conditions.append(f"u.state = ANY(${len(values)}::text[])")
    if dataset is not None:
        values.append(dataset)
        conditions.append(f"d.name = ${len(values)}")
    if after is not None:
        values.extend(after)
        conditions.append(f"(u.create_time, u.id) < (${len(values) - 1}, ${len(values)})")
    values.append(limit)
    rows = await connection.fetch(
        _SELECT + f" WHERE {' AND '.join(conditions)} ORDER BY u.create_time DESC, u.id DESC LIMIT ${len(values)}",
        *values)
    return [_upload(row) for row in rows]


async def by_version(connection: asyncpg.Connection, version_id: uuid.UUID) -> list[Upload]:
    """The uploads a version is made of, by path."""
    rows = await connection.fetch(_SELECT + " WHERE u.version_id = $1 ORDER BY u.path", version_id)
    return [_upload(row) for row in rows]


async def lock_for_commit(connection: asyncpg.Connection, upload_ids: Sequence[uuid.UUID]) -> list[Upload]:
    """The named uploads, locked until the transaction ends."""
    await connection.execute("SELECT 1 FROM uploads WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE",
                             list(upload_ids))
    rows = await connection.fetch(_SELECT + " WHERE u.id = ANY($1::uuid[])", list(upload_ids))
    return [_upload(row) for row in rows]


async def bind(connection: asyncpg.Connection, version_id: uuid.UUID, upload_ids: Sequence[uuid.UUID]) -> int:
    """Make uploads part of a version (only those not part of one already); how many were bound."""
    result = await connection.execute(
        "UPDATE uploads SET version_id = $1 WHERE id = ANY($2::uuid[]) AND version_id IS NULL",
        version_id, list(upload_ids))
    return int(result.split()[-1])


async def unbind(connection: asyncpg.Connection, version_id: uuid.UUID) -> None:
    """Free the still-valid uploads of a failed version, so another commit can use them."""
    await connection.execute(
        "UPDATE uploads SET version_id = NULL WHERE version_id = $1 AND state IN ('STAGED', 'VALIDATING', 'VALIDATED')",
        version_id)


async def set_validated(connection: asyncpg.Connection, upload_id: uuid.UUID, *, sha256: str, size: int,
                        format: str, columns: list[dict[str, Any]], arrow_schema: bytes | None, row_count: int,
                        report: dict[str, Any], stats: list[dict[str, Any]]) -> bool:
    """VALIDATING → VALIDATED, with what validation found."""
    changed = await connection.fetchval(
        """UPDATE uploads SET state = 'VALIDATED', sha256 = $2, size_bytes = $3, format = $4, columns = $5,
                              arrow_schema = $6, row_count = $7, report = $8, stats = $9, failure = NULL,
                              update_time = now()
           WHERE id = $1 AND state = 'VALIDATING' RETURNING id""",
        upload_id, sha256, size, format, columns, arrow_schema, row_count, report, stats)
    return changed is not None


async def is_validated(connection: asyncpg.Connection, upload_id: uuid.UUID) -> bool:
    """Whether validation stored its findings for the upload (so a retry need not validate again)."""
    return bool(await connection.fetchval("SELECT format IS NOT NULL FROM uploads WHERE id = $1", upload_id))


async def ids_in_states_before(connection: asyncpg.Connection, states: Sequence[str],
                               seconds: float) -> list[uuid.UUID]:
    """Uploads in one of `states` whose last change is older than `seconds`."""
    rows = await connection.fetch(
        """SELECT id FROM uploads WHERE state = ANY($1::text[])
           AND update_time < now() - make_interval(secs => $2)""", list(states), seconds)
    return [row["id"] for row in rows]


async def expired_open(connection: asyncpg.Connection, limit: int = 500) -> list[Upload]:
    """OPEN uploads past their expiry."""
    rows = await connection.fetch(_SELECT + " WHERE u.state = 'OPEN' AND u.expire_time < now() LIMIT $1", limit)
    return [_upload(row) for row in rows]


async def unpurged(connection: asyncpg.Connection, limit: int = 500) -> list[Upload]:
    """Uploads whose staged bytes should be gone but are not known to be: cancelled, expired, failed for
    good, or promoted."""
    rows = await connection.fetch(
        _SELECT + """ WHERE u.purge_time IS NULL AND (u.state IN ('CANCELLED', 'EXPIRED', 'PROMOTED')
                      OR (u.state = 'FAILED' AND NOT coalesce((u.failure->>'retryable')::boolean, false)))
                      LIMIT $1""", limit)
    return [_upload(row) for row in rows]


async def unpurged_of_dataset(connection: asyncpg.Connection, dataset_id: uuid.UUID) -> list[Upload]:
    """A dataset's uploads whose staged bytes are not known to be gone."""
    rows = await connection.fetch(_SELECT + " WHERE u.dataset_id = $1 AND u.purge_time IS NULL", dataset_id)
    return [_upload(row) for row in rows]


async def owns_staging(connection: asyncpg.Connection, upload_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these uploads still own their staged bytes (or multipart write)."""
    rows = await connection.fetch(
        """SELECT id FROM uploads WHERE id = ANY($1::uuid[]) AND (state IN ('OPEN', 'STAGED', 'VALIDATING', 'VALIDATED')
           OR (state = 'FAILED' AND coalesce((failure->>'retryable')::boolean, false)))""", list(upload_ids))
    return {row["id"] for row in rows}
