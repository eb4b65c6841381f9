"""The dependency probes behind health: each asks its dependency a real question, within a timeout.

- postgres: `SELECT 1` on a connection of the probe's own, outside the pool, so upload traffic holding every
  pooled connection cannot make a healthy database look down;
- redis: a PING;
- object-store: a small object written, read back and compared, then deleted (a store that answers but
  cannot keep bytes is down too), and on a local store the free space, against QUARRY_MIN_FREE_BYTES.

A probe round returns, per dependency, None when it answered or the reason it did not. `DependencyHealth`
(server/domain/health.py) turns rounds into up and down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg

from server.model.objects import ObjectStore
from server.storage.jobqueue import JobQueue

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 3.0


class ProbeFailed(Exception):
    """A probe's answer was wrong (as opposed to missing)."""


class DependencyProbes:
    """Probes of Postgres, Redis and the object store."""

    def __init__(self, database_url: str, queue: JobQueue, store: ObjectStore, min_free_bytes: int,
                 timeout: float = TIMEOUT_SECONDS) -> None:
        self._database_url = database_url
        self._queue = queue
        self._store = store
        self._min_free_bytes = min_free_bytes
        self._timeout = timeout
        self._connection: asyncpg.Connection | None = None
        self._key = f"health/{uuid.uuid4()}"

    async def __call__(self) -> dict[str, str | None]:
        """One round: each dependency's failure reason, or None when it answered."""
        probes: dict[str, Callable[[], Awaitable[Any]]] = {
            "postgres": self._postgres, "redis": self._queue.ping, "object-store": self._object_store}
        results = await asyncio.gather(*(self._timed(probe) for probe in probes.values()))
        return dict(zip(probes, results, strict=True))

    async def _timed(self, probe: Callable[[], Awaitable[Any]]) -> str | None:
        try:
            async with asyncio.timeout(self._timeout):
                await probe()
        except TimeoutError:
            return f"no answer within {self._timeout:g} s"
        except Exception as exc:  # every way a dependency can fail is a reason, not a crash of the probe
            text = (str(exc).strip().splitlines() or [""])[0]
            return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        return None

    async def _postgres(self) -> None:
        try:
            if self._connection is None or self._connection.is_closed():
                self._connection = await asyncpg.connect(self._database_url, timeout=self._timeout)
            await self._connection.fetchval("SELECT 1")
        except BaseException:
            await self._drop_connection()  # half-used or broken: a fresh one next round
            raise

    async def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.terminate()

    async def _object_store(self) -> None:
        free = await self._store.free_bytes()
        if free is not None and free < self._min_free_bytes:
            raise ProbeFailed(f"{free} bytes free, fewer than QUARRY_MIN_FREE_BYTES ({self._min_free_bytes})")
        payload = os.urandom(32)
        try:
            await self._store.put(self._key, _once(payload))
            back = await self._store.read_range(self._key, 0, len(payload) + 1)
            if back != payload:
                raise ProbeFailed(f"read back {len(back)} bytes other than the {len(payload)} written")
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._store.delete(self._key))

    async def close(self) -> None:
        """Close the probe's own Postgres connection."""
        await self._drop_connection()


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data
