"""Namespaces (created only by an operator, with their quotas), their usage, and datasets as upload targets."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from server.model.namespaces import Namespace, Quota, Usage

_SELECT = """SELECT id, name, max_bytes, max_open_uploads, max_datasets, requests_per_second, revision,
                    create_time, update_time FROM namespaces"""


def _namespace(row: asyncpg.Record) -> Namespace:
    quota = Quota(max_bytes=row["max_bytes"], max_open_uploads=row["max_open_uploads"],
                  max_datasets=row["max_datasets"], requests_per_second=row["requests_per_second"])
    return Namespace(id=row["id"], name=row["name"], quota=quota, revision=row["revision"],
                     create_time=row["create_time"], update_time=row["update_time"])


async def find_id(connection: asyncpg.Connection, name: str) -> uuid.UUID | None:
    """The id of namespace `name`, or None if there is no such namespace."""
    found: uuid.UUID | None = await connection.fetchval("SELECT id FROM namespaces WHERE name = $1", name)
    return found


async def ids_of(connection: asyncpg.Connection, names: Sequence[str]) -> dict[str, uuid.UUID]:
    """The ids of those of `names` that exist."""
    rows = await connection.fetch("SELECT name, id FROM namespaces WHERE name = ANY($1::text[])", list(names))
    return {row["name"]: row["id"] for row in rows}


async def get(connection: asyncpg.Connection, name: str, *, for_update: bool = False) -> Namespace | None:
    """A namespace by name."""
    row = await connection.fetchrow(_SELECT + " WHERE name = $1" + (" FOR UPDATE" if for_update else ""), name)
    return _namespace(row) if row is not None else None


async def insert(connection: asyncpg.Connection, name: str, quota: Quota, request_id: str | None) -> Namespace | None:
    """Create a namespace; None when the name or the request_id is taken."""
    row = await connection.fetchrow(
        """INSERT INTO namespaces (name, max_bytes, max_open_uploads, max_datasets, requests_per_second, request_id)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING
           RETURNING id, name, max_bytes, max_open_uploads, max_datasets, requests_per_second, revision,
                     create_time, update_time""",
        name, quota.max_bytes, quota.max_open_uploads, quota.max_datasets, quota.requests_per_second, request_id)
    return _namespace(row) if row is not None else None


async def find_by_request_id(connection: asyncpg.Connection, request_id: str) -> Namespace | None:
    """The namespace created under `request_id`."""
    row = await connection.fetchrow(_SELECT + " WHERE request_id = $1", request_id)
    return _namespace(row) if row is not None else None


async def set_quota(connection: asyncpg.Connection, namespace_id: uuid.UUID, revision: int, quota: Quota) -> bool:
    """Replace the quota if the namespace is still at `revision` (which NOTIFYs `quarry_namespace`)."""
    result = await connection.execute(
        """UPDATE namespaces SET max_bytes = $3, max_open_uploads = $4, max_datasets = $5, requests_per_second = $6,
                  revision = revision + 1, update_time = now()
           WHERE id = $1 AND revision = $2""",
        namespace_id, revision, quota.max_bytes, quota.max_open_uploads, quota.max_datasets,
        quota.requests_per_second)
    return result.endswith(" 1")


async def page(connection: asyncpg.Connection, *, names: Sequence[str] | None, after: str | None,
               limit: int) -> list[Namespace]:
    """Namespaces by name (only `names`, when given), after the name `after`."""
    rows = await connection.fetch(
        _SELECT + """ WHERE ($1::text[] IS NULL OR name = ANY($1::text[])) AND ($2::text IS NULL OR name > $2)
                      ORDER BY name LIMIT $3""", None if names is None else list(names), after, limit)
    return [_namespace(row) for row in rows]


async def lock_namespace(connection: asyncpg.Connection, namespace_id: uuid.UUID) -> None:
    """Serialise quota checks of one namespace until the transaction ends."""
    await connection.execute("SELECT 1 FROM namespaces WHERE id = $1 FOR UPDATE", namespace_id)


async def stored_bytes(connection: asyncpg.Connection, namespace_id: uuid.UUID) -> int:
    """Bytes the namespace stores: its fresh objects, plus the committed parts of uploads not yet purged."""
    value = await connection.fetchval(
        """SELECT (SELECT coalesce(sum(size_bytes), 0) FROM fresh_objects WHERE namespace_id = $1)
                + (SELECT coalesce(sum(p.size_bytes), 0) FROM upload_parts p JOIN uploads u ON u.id = p.upload_id
                   WHERE u.namespace_id = $1 AND u.purge_time IS NULL)""", namespace_id)
    return int(value)


async def live_datasets(connection: asyncpg.Connection, namespace_id: uuid.UUID) -> int:
    """How many datasets of the namespace are not deleted."""
    return int(await connection.fetchval(
        "SELECT count(*) FROM datasets WHERE namespace_id = $1 AND state <> 'DELETED'", namespace_id))


async def usage(connection: asyncpg.Connection, namespace_id: uuid.UUID) -> Usage:
    """What the namespace holds now."""
    open_uploads = await connection.fetchval(
        "SELECT count(*) FROM uploads WHERE namespace_id = $1 AND state = 'OPEN'", namespace_id)
    return Usage(stored_bytes=await stored_bytes(connection, namespace_id), open_uploads=int(open_uploads),
                 datasets=await live_datasets(connection, namespace_id))


async def find_live_dataset(connection: asyncpg.Connection, namespace_id: uuid.UUID, name: str) -> uuid.UUID | None:
    """The id of the live dataset `name`, if there is one."""
    found: uuid.UUID | None = await connection.fetchval(
        "SELECT id FROM datasets WHERE namespace_id = $1 AND name = $2 AND state <> 'DELETED'", namespace_id, name)
    return found


async def ensure_draft_dataset(connection: asyncpg.Connection, namespace_id: uuid.UUID, name: str) -> uuid.UUID:
    """The id of the live dataset `name`, created as DRAFT if there is none."""
    found = await find_live_dataset(connection, namespace_id, name)
    if found is not None:
        return found
    await connection.execute(
        """INSERT INTO datasets (namespace_id, name) VALUES ($1, $2)
           ON CONFLICT (namespace_id, name) WHERE state <> 'DELETED' DO NOTHING""", namespace_id, name)
    created = await find_live_dataset(connection, namespace_id, name)
    assert created is not None
    return created


async def page_token_key(connection: asyncpg.Connection) -> bytes:
    """The key that signs page tokens, shared by every replica."""
    value = await connection.fetchval("SELECT value FROM server_secrets WHERE name = 'page_token_key'")
    return bytes.fromhex(value)
