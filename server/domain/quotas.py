"""Quota checks: each runs inside the transaction that would exceed it, with the namespace's row locked, so
concurrent calls on any replica cannot both slip under a limit. Over a quota is RESOURCE_EXHAUSTED with a
QuotaFailure naming it (QuotaExceeded); nothing is written."""

from __future__ import annotations

from server.model.errors import QuotaExceeded
from server.model.namespaces import Namespace
from server.storage import namespaces as repo
from server.storage import uploads as uploads_repo
from server.storage.db import Connection


async def check_datasets(connection: Connection, namespace: Namespace, adding: int = 1) -> None:
    """Room for `adding` more live datasets."""
    limit = namespace.quota.max_datasets
    if not limit:
        return
    await repo.lock_namespace(connection, namespace.id)
    count = await repo.live_datasets(connection, namespace.id)
    if count + adding > limit:
        raise QuotaExceeded(f"namespace {namespace.name} has {count} datasets; its quota is {limit}",
                            subject=namespace.resource_name, quota="max_datasets", limit=limit)


async def check_open_uploads(connection: Connection, namespace: Namespace, server_limit: int) -> None:
    """Room for one more OPEN upload: the namespace's own limit, else the server's (QUARRY_MAX_OPEN_UPLOADS)."""
    limit = namespace.quota.max_open_uploads or server_limit
    await repo.lock_namespace(connection, namespace.id)
    count = await uploads_repo.count_open(connection, namespace.id)
    if count >= limit:
        raise QuotaExceeded(f"namespace {namespace.name} has {count} open uploads; the limit is {limit}",
                            subject=namespace.resource_name, quota="max_open_uploads", limit=limit,
                            reason="TOO_MANY_OPEN_UPLOADS")


async def check_bytes(connection: Connection, namespace: Namespace, adding: int) -> None:
    """Room for `adding` more stored bytes (fresh objects plus staged parts)."""
    limit = namespace.quota.max_bytes
    if not limit:
        return
    await repo.lock_namespace(connection, namespace.id)
    stored = await repo.stored_bytes(connection, namespace.id)
    if stored + adding > limit:
        raise QuotaExceeded(f"namespace {namespace.name} stores {stored} bytes; {adding} more would pass its quota "
                            f"of {limit}", subject=namespace.resource_name, quota="max_bytes", limit=limit)
