"""SQL (and store probes) for the sweep: uncommitted auto-commits, open multipart ids, unreferenced objects,
deleted datasets past their retention (and their purge)."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from server.model.objects import ObjectStore


async def uncommitted_auto_commits(connection: asyncpg.Connection, seconds: float) -> list[uuid.UUID]:
    """VALIDATED uploads that asked to be committed and never were (their commit gave up), unchanged for
    `seconds`. An upload freed by its failed auto-commit version is left alone: committing it again would
    only find that version."""
    rows = await connection.fetch(
        """SELECT u.id FROM uploads u
           WHERE u.state = 'VALIDATED' AND u.auto_commit AND u.version_id IS NULL
             AND u.update_time < now() - make_interval(secs => $1)
             AND NOT EXISTS (SELECT 1 FROM versions v
                             WHERE v.dataset_id = u.dataset_id AND v.request_id = 'auto:' || u.id::text)""",
        seconds)
    return [row["id"] for row in rows]


async def open_multipart_ids(connection: asyncpg.Connection) -> set[str]:
    """The store's multipart ids that OPEN uploads are still writing."""
    rows = await connection.fetch(
        "SELECT store_upload_id FROM uploads WHERE state = 'OPEN' AND store_upload_id IS NOT NULL")
    return {row["store_upload_id"] for row in rows}


async def older_than(store: ObjectStore, key: str, cutoff: datetime) -> bool:
    """Whether an object was written before `cutoff` (a staging object younger than that may be mid-upload)."""
    modified = await store.modified(key)
    return modified is not None and modified < cutoff


async def deleted_longer_than(connection: asyncpg.Connection, dataset_id: uuid.UUID, seconds: float) -> bool:
    """Whether a DELETED dataset was deleted more than `seconds` ago (by the database's clock)."""
    return bool(await connection.fetchval(
        """SELECT d.delete_time < now() - make_interval(secs => $2) FROM datasets d
           WHERE d.id = $1 AND d.state = 'DELETED'""", dataset_id, seconds))


async def deleted_before(connection: asyncpg.Connection, seconds: float, limit: int = 100) -> list[uuid.UUID]:
    """Datasets deleted more than `seconds` ago: past the retention period, to purge."""
    rows = await connection.fetch(
        """SELECT id FROM datasets WHERE state = 'DELETED' AND delete_time < now() - make_interval(secs => $1)
           ORDER BY delete_time LIMIT $2""", seconds, limit)
    return [row["id"] for row in rows]


async def purge_dataset(connection: asyncpg.Connection, dataset_id: uuid.UUID, seconds: float) -> bool:
    """Delete a dataset deleted more than `seconds` ago, with its versions, file lists and uploads (whose staged
    bytes must be gone: False while one still holds some, or if an undelete won the dataset's lock). Its objects
    stay until the collector finds no version listing them; their rows forget the dataset."""
    locked = await connection.fetchval(
        """SELECT id FROM datasets WHERE id = $1 AND state = 'DELETED'
             AND delete_time < now() - make_interval(secs => $2) FOR UPDATE""", dataset_id, seconds)
    if locked is None:
        return False
    if await connection.fetchval("SELECT 1 FROM uploads WHERE dataset_id = $1 AND purge_time IS NULL LIMIT 1",
                                 dataset_id):
        return False
    versions = "SELECT id FROM versions WHERE dataset_id = $1"
    await connection.execute(f"DELETE FROM version_files WHERE version_id IN ({versions})", dataset_id)
    await connection.execute("UPDATE datasets SET current_version_id = NULL WHERE id = $1", dataset_id)
    await connection.execute("DELETE FROM uploads WHERE dataset_id = $1", dataset_id)
    await connection.execute("DELETE FROM versions WHERE dataset_id = $1", dataset_id)
    await connection.execute("DELETE FROM datasets WHERE id = $1", dataset_id)
    return True


async def unreferenced_objects(connection: asyncpg.Connection, grace_seconds: float, limit: int = 1000) -> list[str]:
    """Fresh objects no version lists, untouched for the grace period."""
    rows = await connection.fetch(
        """SELECT o.key FROM fresh_objects o
           WHERE o.touch_time < now() - make_interval(secs => $1)
             AND NOT EXISTS (SELECT 1 FROM version_files vf WHERE vf.object_key = o.key)
             AND NOT EXISTS (SELECT 1 FROM version_files vf WHERE vf.rendition_key = o.key)
           LIMIT $2""", grace_seconds, limit)
    return [row["key"] for row in rows]


async def lock_if_unreferenced(connection: asyncpg.Connection, key: str, grace_seconds: float) -> bool:
    """Lock an object's row if it is still unreferenced and stale (skip it if someone holds it)."""
    found = await connection.fetchval(
        """SELECT o.key FROM fresh_objects o
           WHERE o.key = $1 AND o.touch_time < now() - make_interval(secs => $2)
             AND NOT EXISTS (SELECT 1 FROM version_files vf WHERE vf.object_key = o.key)
             AND NOT EXISTS (SELECT 1 FROM version_files vf WHERE vf.rendition_key = o.key)
           FOR UPDATE SKIP LOCKED""", key, grace_seconds)
    return found is not None


async def forget_object(connection: asyncpg.Connection, key: str) -> None:
    """Delete an object's row (its bytes are gone)."""
    await connection.execute("DELETE FROM fresh_objects WHERE key = $1", key)
