"""The versions repository: versions, their files, and the datasets' current version.

Functions take the connection of the caller's transaction; rows leave as models.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from server.model.datasets import DatasetRules, FileFormat
from server.model.failures import Failure
from server.model.names import VersionRef
from server.model.registration import ExternalObject, Registration
from server.model.report import ColumnInfo, ColumnStats
from server.model.versions import DatasetHead, FileReport, Rendition, Version, VersionFile, VersionState

_SELECT = """
    SELECT v.*, n.name AS namespace_name, d.name AS dataset_name
    FROM versions v
    JOIN datasets d ON d.id = v.dataset_id
    JOIN namespaces n ON n.id = d.namespace_id
"""


def _version(row: asyncpg.Record, files: Sequence[VersionFile] = ()) -> Version:
    return Version(
        id=row["id"], dataset_id=row["dataset_id"], namespace=row["namespace_name"], dataset=row["dataset_name"],
        number=row["number"], base_id=row["base_id"], parent_id=row["parent_id"],
        message=row["message"], state=VersionState(row["state"]),
        failure=Failure.from_json(row["failure"]), author=row["author"], delete_paths=tuple(row["delete_paths"]),
        file_count=row["file_count"], total_bytes=row["total_bytes"], total_rows=row["total_rows"],
        create_time=row["create_time"], ready_time=row["ready_time"], files=tuple(files),
        cloned_from=row["cloned_from"], registration=Registration.from_json(row["registration"]))


def _rendition(row: asyncpg.Record) -> Rendition | None:
    key = row.get("rendition_key")
    return None if key is None else Rendition(key, row["rendition_size"], row["rendition_sha256"])


def _file(row: asyncpg.Record) -> VersionFile:
    fmt = FileFormat(row["format"])
    return VersionFile(
        path=row["path"], object_key=row["object_key"], size=row["size_bytes"], sha256=row["sha256"], format=fmt,
        content_type=row["content_type"], columns=tuple(ColumnInfo.from_json(c) for c in row["columns"]),
        row_count=row["row_count"], report=FileReport.from_json(row["report"], fmt),
        stats=tuple(ColumnStats.from_json(s) for s in row["stats"]), arrow_schema=row["arrow_schema"],
        upload_id=row["upload_id"], rendition=_rendition(row))


_HEAD = """
    SELECT d.id, d.name, d.state, d.rules, d.current_version_id, d.namespace_id, n.name AS namespace_name,
           v.number AS current_number
    FROM datasets d JOIN namespaces n ON n.id = d.namespace_id
    LEFT JOIN versions v ON v.id = d.current_version_id
"""


async def dataset_head(connection: asyncpg.Connection, namespace: str, name: str, *,
                       for_update: bool = False) -> DatasetHead | None:
    """The live dataset `name` of a namespace (locked until the transaction ends with `for_update`)."""
    dataset_id = await connection.fetchval(
        """SELECT d.id FROM datasets d JOIN namespaces n ON n.id = d.namespace_id
           WHERE n.name = $1 AND d.name = $2 AND d.state <> 'DELETED'""", namespace, name)
    if dataset_id is None:
        return None
    return await dataset_head_by_id(connection, dataset_id, for_update=for_update)


async def dataset_head_by_id(connection: asyncpg.Connection, dataset_id: uuid.UUID, *,
                             for_update: bool = False) -> DatasetHead | None:
    """A dataset by id (whatever its state)."""
    if for_update:
        # Lock first, then read in a new statement: a read joined to the lock would see the current version
        # as it was before the lock was granted (Postgres re-checks only the locked row).
        await connection.execute("SELECT 1 FROM datasets WHERE id = $1 FOR UPDATE", dataset_id)
    row = await connection.fetchrow(_HEAD + " WHERE d.id = $1", dataset_id)
    return None if row is None else _head(row)


def _head(row: asyncpg.Record) -> DatasetHead:
    return DatasetHead(id=row["id"], namespace=row["namespace_name"], namespace_id=row["namespace_id"],
                       name=row["name"], state=row["state"], current_version_id=row["current_version_id"],
                       current_number=row["current_number"], rules=DatasetRules.from_json(row["rules"]))


async def insert(connection: asyncpg.Connection, *, dataset_id: uuid.UUID, base_id: uuid.UUID | None, message: str,
                 author: str, request_id: str | None, delete_paths: Sequence[str]) -> uuid.UUID:
    """A new PENDING version."""
    return await connection.fetchval(
        """INSERT INTO versions (dataset_id, base_id, message, author, request_id, delete_paths)
           VALUES ($1, $2, $3, $4, $5, $6) RETURNING id""",
        dataset_id, base_id, message, author, request_id, list(delete_paths))


async def set_registration(connection: asyncpg.Connection, version_id: uuid.UUID, registration: Registration) -> None:
    """Record what a PENDING version registers (its promotion reads it)."""
    await connection.execute("UPDATE versions SET registration = $2 WHERE id = $1", version_id, registration.to_json())


async def touch_external(connection: asyncpg.Connection, *, key: str, namespace_id: uuid.UUID,
                         dataset_id: uuid.UUID, sha256: str, item: ExternalObject) -> None:
    """Record (or re-pin) a registered external object; the collector will only ever delete this row."""
    await connection.execute(
        """INSERT INTO fresh_objects (key, namespace_id, dataset_id, sha256, size_bytes, external_uri, external_etag,
                                      external_version)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (key) DO UPDATE SET touch_time = now(), external_etag = excluded.external_etag,
                                           external_version = excluded.external_version""",
        key, namespace_id, dataset_id, sha256, item.size, item.uri, item.etag, item.version_id or None)


async def find_by_request_id(connection: asyncpg.Connection, dataset_id: uuid.UUID,
                             request_id: str) -> uuid.UUID | None:
    """The version an earlier commit with this request_id created."""
    return await connection.fetchval(
        "SELECT id FROM versions WHERE dataset_id = $1 AND request_id = $2", dataset_id, request_id)


async def get(connection: asyncpg.Connection, version_id: uuid.UUID, *, with_files: bool = False,
              for_update: bool = False) -> Version | None:
    """One version (and its files)."""
    if for_update:
        await connection.execute("SELECT 1 FROM versions WHERE id = $1 FOR UPDATE", version_id)
    row = await connection.fetchrow(_SELECT + " WHERE v.id = $1", version_id)
    if row is None:
        return None
    return _version(row, await files(connection, version_id) if with_files else ())


async def id_by_number(connection: asyncpg.Connection, dataset_id: uuid.UUID, number: int) -> uuid.UUID | None:
    """The id of READY version `number` of a dataset."""
    return await connection.fetchval(
        "SELECT id FROM versions WHERE dataset_id = $1 AND number = $2", dataset_id, number)


async def page(connection: asyncpg.Connection, dataset_id: uuid.UUID, after: tuple[datetime, uuid.UUID] | None,
               limit: int) -> list[Version]:
    """Versions of a dataset, newest first, after a keyset position."""
    if after is None:
        rows = await connection.fetch(
            _SELECT + " WHERE v.dataset_id = $1 ORDER BY v.create_time DESC, v.id DESC LIMIT $2", dataset_id, limit)
    else:
        rows = await connection.fetch(
            _SELECT + """ WHERE v.dataset_id = $1 AND (v.create_time, v.id) < ($2, $3)
                          ORDER BY v.create_time DESC, v.id DESC LIMIT $4""", dataset_id, *after, limit)
    return [_version(row) for row in rows]


async def files(connection: asyncpg.Connection, version_id: uuid.UUID) -> list[VersionFile]:
    """The files of a version, by path."""
    rows = await connection.fetch("SELECT * FROM version_files WHERE version_id = $1 ORDER BY path", version_id)
    return [_file(row) for row in rows]


# What a BASIC listing reads: no columns, schema, report or statistics (the bulk of a row).
_BASIC_COLUMNS = """path, object_key, upload_id, size_bytes, sha256, format, content_type, row_count,
                    rendition_key, rendition_size, rendition_sha256,
                    '[]'::jsonb AS columns, NULL::bytea AS arrow_schema, '{}'::jsonb AS report, '[]'::jsonb AS stats"""


async def files_page(connection: asyncpg.Connection, version_id: uuid.UUID, *, after: str | None, prefix: str,
                     formats: Sequence[str], limit: int, full: bool) -> list[VersionFile]:
    """Up to `limit` files of a version after path `after`, by path; only paths starting with `prefix` and (when
    given) of `formats`. Keyset paging on the primary key (version_id, path): a page costs the same anywhere."""
    rows = await connection.fetch(
        f"""SELECT {"*" if full else _BASIC_COLUMNS} FROM version_files
            WHERE version_id = $1 AND ($2::text IS NULL OR path > $2) AND starts_with(path, $3)
              AND (cardinality($4::text[]) = 0 OR format = ANY($4::text[]))
            ORDER BY path LIMIT $5""", version_id, after, prefix, list(formats), limit)
    return [_file(row) for row in rows]


async def differing_paths(connection: asyncpg.Connection, base_id: uuid.UUID, target_id: uuid.UUID, *,
                          after: str | None, limit: int) -> list[str]:
    """Up to `limit` paths after `after`, by path, that differ from version `base_id` to `target_id`: in the base
    and not identical in the target (removed or changed), or only in the target (added).

    Each arm walks the primary key (version_id, path) of both versions side by side and stops at the limit, so
    a page costs about its own size where changes are dense, instead of a join of both versions every page.
    Identical means the same sha256 and object key, as `diff.change_of` decides.
    """
    rows = await connection.fetch(
        """(SELECT a.path FROM version_files a
            WHERE a.version_id = $1 AND ($3::text IS NULL OR a.path > $3)
              AND NOT EXISTS (SELECT FROM version_files b
                              WHERE b.version_id = $2 AND b.path = a.path AND ($3::text IS NULL OR b.path > $3)
                                AND b.sha256 = a.sha256 AND b.object_key = a.object_key)
            ORDER BY a.path LIMIT $4)
           UNION ALL
           (SELECT b.path FROM version_files b
            WHERE b.version_id = $2 AND ($3::text IS NULL OR b.path > $3)
              AND NOT EXISTS (SELECT FROM version_files a
                              WHERE a.version_id = $1 AND a.path = b.path AND ($3::text IS NULL OR a.path > $3))
            ORDER BY b.path LIMIT $4)
           ORDER BY path LIMIT $4""", base_id, target_id, after, limit)
    return [row["path"] for row in rows]


async def unchanged_count(connection: asyncpg.Connection, base_id: uuid.UUID, target_id: uuid.UUID) -> int:
    """How many paths two versions have with identical files (same sha256 and object key)."""
    count = await connection.fetchval(
        """SELECT count(*) FROM version_files a JOIN version_files b
             ON b.version_id = $2 AND b.path = a.path AND b.sha256 = a.sha256 AND b.object_key = a.object_key
           WHERE a.version_id = $1""", base_id, target_id)
    return int(count)


async def files_at(connection: asyncpg.Connection, version_id: uuid.UUID, paths: Sequence[str]) -> list[VersionFile]:
    """The files of a version at these paths (those it has), whole: a diff page's schema changes need columns."""
    rows = await connection.fetch("SELECT * FROM version_files WHERE version_id = $1 AND path = ANY($2::text[])",
                                  version_id, list(paths))
    return [_file(row) for row in rows]


async def file(connection: asyncpg.Connection, version_id: uuid.UUID, path: str) -> VersionFile | None:
    """One file of a version."""
    row = await connection.fetchrow("SELECT * FROM version_files WHERE version_id = $1 AND path = $2",
                                    version_id, path)
    return None if row is None else _file(row)


_FILE_OF_READY = """
    SELECT vf.* FROM namespaces n
    JOIN datasets d ON d.namespace_id = n.id
    JOIN versions v ON {version}
    JOIN version_files vf ON vf.version_id = v.id
    WHERE n.name = $1 AND d.name = $2 AND d.state <> 'DELETED' AND v.state = 'READY' AND vf.path = $3"""
_FILE_OF_CURRENT = _FILE_OF_READY.format(version="v.id = d.current_version_id")
_FILE_OF_NUMBER = _FILE_OF_READY.format(version="v.dataset_id = d.id AND v.number = $4")
_FILE_OF_UID = _FILE_OF_READY.format(version="v.id = $4 AND v.dataset_id = d.id")


async def file_of_ref(connection: asyncpg.Connection, ref: VersionRef, path: str) -> VersionFile | None:
    """One file of a READY version named by number, uid or "latest", in one round trip (ReadFile asks this of
    every range it reads). None for any miss: the caller learns which the slower way."""
    dataset = ref.dataset
    if ref.number is not None:
        row = await connection.fetchrow(_FILE_OF_NUMBER, dataset.namespace, dataset.dataset, path, ref.number)
    elif ref.uid is not None:
        row = await connection.fetchrow(_FILE_OF_UID, dataset.namespace, dataset.dataset, path, ref.uid)
    else:
        row = await connection.fetchrow(_FILE_OF_CURRENT, dataset.namespace, dataset.dataset, path)
    return None if row is None else _file(row)


async def validated_file(connection: asyncpg.Connection, upload_id: uuid.UUID) -> VersionFile | None:
    """What validation stored for an upload, as the version file it becomes; its object_key is still the
    staging key (promotion moves it to fresh storage). None if the upload was never validated."""
    row = await connection.fetchrow(
        """SELECT path, staging_key AS object_key, size_bytes, sha256, format, content_type, columns, arrow_schema,
                  row_count, report, stats, id AS upload_id
           FROM uploads WHERE id = $1 AND format IS NOT NULL""", upload_id)
    return None if row is None else _file(row)


async def rendition_of(connection: asyncpg.Connection, dataset_id: uuid.UUID, sha256: str) -> Rendition | None:
    """A rendition a file of the same content already has in this dataset (rendered once, shared since)."""
    row = await connection.fetchrow(
        """SELECT vf.rendition_key, vf.rendition_size, vf.rendition_sha256 FROM version_files vf
           JOIN versions v ON v.id = vf.version_id
           WHERE v.dataset_id = $1 AND vf.sha256 = $2 AND vf.rendition_key IS NOT NULL LIMIT 1""", dataset_id, sha256)
    return None if row is None else _rendition(row)


async def changed_paths(connection: asyncpg.Connection, base_id: uuid.UUID | None,
                        current_id: uuid.UUID | None) -> set[str]:
    """Paths added, removed or changed between two versions (either may be None: no files)."""
    rows = await connection.fetch(
        """SELECT coalesce(b.path, c.path) AS path
           FROM (SELECT path, object_key FROM version_files WHERE version_id = $1) b
           FULL OUTER JOIN (SELECT path, object_key FROM version_files WHERE version_id = $2) c ON c.path = b.path
           WHERE b.object_key IS DISTINCT FROM c.object_key""", base_id, current_id)
    return {row["path"] for row in rows}


async def transition(connection: asyncpg.Connection, version_id: uuid.UUID, expected: Iterable[VersionState],
                     state: VersionState, failure: Failure | None = None) -> bool:
    """Move to `state` if the version is in one of `expected`; False if it was not."""
    changed = await connection.fetchval(
        """UPDATE versions SET state = $3, failure = $4, update_time = now()
           WHERE id = $1 AND state = ANY($2::text[]) RETURNING id""",
        version_id, [s.value for s in expected], state.value, None if failure is None else failure.to_json())
    return changed is not None


async def insert_files(connection: asyncpg.Connection, version_id: uuid.UUID, entries: Sequence[VersionFile]) -> None:
    """Write a version's file list."""
    await connection.executemany(
        """INSERT INTO version_files (version_id, path, object_key, upload_id, size_bytes, sha256, format,
                                      content_type, columns, arrow_schema, row_count, report, stats, rendition_key,
                                      rendition_size, rendition_sha256)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)""",
        [(version_id, f.path, f.object_key, f.upload_id, f.size, f.sha256, f.format.value, f.content_type,
          [c.to_json() for c in f.columns], f.arrow_schema, f.row_count, _report_json(f.report),
          [s.to_json() for s in f.stats], *_rendition_values(f)) for f in entries])


def _rendition_values(file: VersionFile) -> tuple[str | None, int | None, str | None]:
    rendition = file.rendition
    return (None, None, None) if rendition is None else (rendition.key, rendition.size, rendition.sha256)


def _report_json(report: FileReport) -> dict[str, Any]:
    return {"format": report.format.value, "detected_by": report.detected_by, "row_count": report.row_count,
            "row_groups": report.row_groups, "bytes_read": report.bytes_read,
            "warnings": [w.to_json() for w in report.warnings], "errors": [e.to_json() for e in report.errors]}


async def make_ready(connection: asyncpg.Connection, version_id: uuid.UUID, *, number: int,
                     parent_id: uuid.UUID | None, file_count: int, total_bytes: int, total_rows: int) -> bool:
    """PROMOTING → READY with its number and totals."""
    changed = await connection.fetchval(
        """UPDATE versions SET state = 'READY', number = $2, parent_id = $3, file_count = $4, total_bytes = $5,
                               total_rows = $6, ready_time = now(), update_time = now(), failure = NULL
           WHERE id = $1 AND state = 'PROMOTING' RETURNING id""",
        version_id, number, parent_id, file_count, total_bytes, total_rows)
    return changed is not None


async def set_current(connection: asyncpg.Connection, dataset_id: uuid.UUID, version_id: uuid.UUID) -> None:
    """Make a READY version the dataset's current one (the dataset becomes ACTIVE)."""
    await connection.execute(
        """UPDATE datasets SET current_version_id = $2, state = 'ACTIVE', update_time = now(),
                               revision = revision + 1
           WHERE id = $1""", dataset_id, version_id)


async def touch_object(connection: asyncpg.Connection, *, key: str, namespace_id: uuid.UUID, dataset_id: uuid.UUID,
                       sha256: str, size: int) -> None:
    """Record (or refresh) a fresh object before it is copied, so the garbage collector leaves it alone."""
    await connection.execute(
        """INSERT INTO fresh_objects (key, namespace_id, dataset_id, sha256, size_bytes) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (key) DO UPDATE SET touch_time = now()""", key, namespace_id, dataset_id, sha256, size)


async def insert_ready(connection: asyncpg.Connection, *, dataset_id: uuid.UUID, number: int,
                       base_id: uuid.UUID | None, parent_id: uuid.UUID | None, message: str, author: str,
                       request_id: str | None, cloned_from: str = "") -> uuid.UUID:
    """A version READY at once (a clone, an inline write): its files follow in the same transaction, then
    `set_totals`."""
    return await connection.fetchval(
        """INSERT INTO versions (dataset_id, number, base_id, parent_id, message, author, request_id, state,
                                 ready_time, cloned_from)
           VALUES ($1, $2, $3, $4, $5, $6, $7, 'READY', now(), $8) RETURNING id""",
        dataset_id, number, base_id, parent_id, message, author, request_id, cloned_from)


async def copy_files(connection: asyncpg.Connection, source_id: uuid.UUID, target_id: uuid.UUID,
                     except_paths: Sequence[str] = (), *, same_dataset: bool = True) -> int:
    """Give a version the files of another (but `except_paths`) in one statement: rows only, the objects they
    list are shared. Into another dataset (a clone) the rows forget the uploads that brought the files, which
    belong to the source and go when it is purged. Returns how many were copied."""
    result = await connection.execute(
        """INSERT INTO version_files (version_id, path, object_key, upload_id, size_bytes, sha256, format,
                                      content_type, columns, arrow_schema, row_count, report, stats, rendition_key,
                                      rendition_size, rendition_sha256)
           SELECT $2, path, object_key, CASE WHEN $4 THEN upload_id END, size_bytes, sha256, format, content_type,
                  columns, arrow_schema, row_count, report, stats, rendition_key, rendition_size, rendition_sha256
           FROM version_files WHERE version_id = $1 AND NOT path = ANY($3::text[])""",
        source_id, target_id, list(except_paths), same_dataset)
    return int(result.split()[-1])


async def set_totals(connection: asyncpg.Connection, version_id: uuid.UUID) -> None:
    """A version's file count, bytes and rows, summed from its file list."""
    await connection.execute(
        """UPDATE versions v SET file_count = t.files, total_bytes = t.bytes, total_rows = t.rows
           FROM (SELECT count(*) AS files, coalesce(sum(size_bytes), 0) AS bytes, coalesce(sum(row_count), 0) AS rows
                 FROM version_files WHERE version_id = $1) t
           WHERE v.id = $1""", version_id)


async def ids_in_states_before(connection: asyncpg.Connection, states: Iterable[VersionState],
                               seconds: float) -> list[uuid.UUID]:
    """Versions in one of `states` whose last change is older than `seconds`."""
    rows = await connection.fetch(
        """SELECT id FROM versions WHERE state = ANY($1::text[])
           AND update_time < now() - make_interval(secs => $2)""", [s.value for s in states], seconds)
    return [row["id"] for row in rows]
