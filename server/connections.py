"""The shared clients every process needs (Postgres pool, job queue, object store), opened once, and the
probes that tell whether each still answers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg

from server.model.errors import ConfigError, QuarryError
from server.model.objects import ObjectStore
from server.model.redaction import redact
from server.probes import DependencyProbes
from server.settings import Settings
from server.storage import db
from server.storage.jobqueue import JobQueue
from server.storage.migrate import migrate
from server.storage.objects import open_store

log = logging.getLogger(__name__)


@dataclass
class Connections:
    """Open connections to Postgres, Redis and the object store, and their probes."""

    settings: Settings
    pool: asyncpg.Pool
    queue: JobQueue
    store: ObjectStore
    probe: DependencyProbes


@contextlib.asynccontextmanager
async def open_connections(settings: Settings) -> AsyncIterator[Connections]:
    """Connect to everything (migrating the schema first); ConfigError names the setting that failed."""
    async with contextlib.AsyncExitStack() as stack:
        timeout = settings.startup_timeout_seconds
        # Reach every dependency before changing anything, so a bad setting leaves no trace.
        connection = await db.connect(settings.database_url, timeout)
        try:
            queue = await JobQueue.connect(settings.redis_url, timeout)
            stack.push_async_callback(queue.close)
            store = await _open_store(settings)
            stack.push_async_callback(store.close)
            applied = await migrate(connection)
        finally:
            await connection.close()
        if applied:
            log.info("applied migrations", extra={"migrations": applied})
        pool = await stack.enter_async_context(db.pool_of(settings.database_url, timeout))
        probes = DependencyProbes(settings.database_url, queue, store, settings.min_free_bytes)
        stack.push_async_callback(probes.close)
        yield Connections(settings, pool, queue, store, probes)


async def open_configured_store(settings: Settings) -> ObjectStore:
    """The object store the settings name (its connection not yet checked)."""
    secret = settings.s3_secret_access_key.get_secret_value() if settings.s3_secret_access_key else None
    return await open_store(settings.storage, access_key_id=settings.s3_access_key_id, secret_access_key=secret,
                            parts_in_flight=settings.s3_parts_in_flight)


async def _open_store(settings: Settings) -> ObjectStore:
    try:
        store = await open_configured_store(settings)
    except OSError as exc:
        raise ConfigError("QUARRY_STORAGE_URL", redact(f"cannot open {settings.storage_url}: {exc}")) from None
    try:
        await asyncio.wait_for(store.ping(), timeout=max(2.0, settings.startup_timeout_seconds))
    except (TimeoutError, QuarryError) as exc:
        await store.close()
        reason = str(exc) or "timed out"
        raise ConfigError("QUARRY_STORAGE_URL",
                          redact(f"object store {settings.storage_url} does not answer: {reason}")) from None
    return store
