"""Health tells the truth: down only after failed probes in a row, and each probe asks a real question.

The probes run in this process against the session's real Postgres, Redis and store: the Postgres probe
answers while every pooled connection is taken (it has a connection of its own), the store probe writes and
reads back (a store that returns other bytes is down: a fault injected behind the ObjectStore interface), and
a local store short of free space is down. Then a real server, whose store has less free space than it asks
for, goes NOT_SERVING on `object-store` only, and says why in its log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.connections import Connections, open_connections
from server.domain.health import DEPENDENCIES, DependencyHealth
from server.storage.objects.local import LocalStore
from tests.conftest import settings_of
from tests.support import start_server
from tests.test_server import NOT_SERVING, SERVING, health_of, wait_for_status


def test_a_dependency_is_down_only_after_failures_in_a_row(caplog: pytest.LogCaptureFixture) -> None:
    health = DependencyHealth(DEPENDENCIES, failures=3)
    ok = {name: None for name in DEPENDENCIES}
    with caplog.at_level(logging.WARNING, logger="server.domain.health"):
        for _ in range(2):
            health.record(dict(ok, postgres="no answer within 3 s"))
        assert health.all_up  # two slow answers: still up
        health.record(ok)
        health.record(dict(ok, postgres="no answer within 3 s"))
        health.record(dict(ok, postgres="no answer within 3 s"))
        assert health.all_up  # the success in between started the count again
        health.record(dict(ok, postgres="ConnectionRefusedError: [Errno 111] Connect call failed"))
        assert not health.up("postgres") and health.up("redis") and not health.all_up
        assert health.describe() == "postgres: ConnectionRefusedError: [Errno 111] Connect call failed"
        health.record(ok)
    assert health.all_up and health.describe() == ""
    down = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in down] == ["dependency postgres is down: ConnectionRefusedError: [Errno 111] "
                                              "Connect call failed"]
    assert any(r.getMessage() == "dependency postgres is back" for r in caplog.records)


@pytest.fixture
async def deps(stack_envs: dict[str, dict[str, str]], tmp_path: Path) -> AsyncIterator[Connections]:
    settings = settings_of(dict(stack_envs["file"], QUARRY_STORAGE_URL=f"file://{tmp_path / 'objects'}"))
    async with open_connections(settings) as opened:
        yield opened


async def test_the_postgres_probe_answers_while_the_pool_is_taken(deps: Connections) -> None:
    held = [await deps.pool.acquire() for _ in range(deps.pool.get_max_size())]
    try:
        with pytest.raises(TimeoutError):  # what upload traffic holding every connection does to a pooled query
            await asyncio.wait_for(deps.pool.fetchval("SELECT 1"), 1)
        assert await deps.probe() == {"postgres": None, "redis": None, "object-store": None}
    finally:
        for connection in held:
            await deps.pool.release(connection)


class _Forgetful(LocalStore):
    """A store that takes writes but reads back other bytes."""

    async def read_range(self, key: str, offset: int, length: int) -> bytes:
        return b"\0" * (await super().stat(key)).size  # type: ignore[union-attr]


async def test_the_store_probe_writes_reads_back_and_counts_free_space(deps: Connections, tmp_path: Path) -> None:
    store = deps.store
    assert isinstance(store, LocalStore)
    deps.probe._store = await _Forgetful(store.root).open()
    assert (await deps.probe())["object-store"] == "ProbeFailed: read back 32 bytes other than the 32 written"
    deps.probe._store = store
    assert (await deps.probe())["object-store"] is None
    assert [o async for o in store.list_objects("health/")] == []  # the probe's object does not stay
    free = await store.free_bytes()
    assert free is not None and free > 0
    deps.probe._min_free_bytes = free + (1 << 40)
    reason = (await deps.probe())["object-store"]
    assert reason is not None and "fewer than QUARRY_MIN_FREE_BYTES" in reason


def test_a_server_short_of_free_space_is_not_serving(stack_envs: dict[str, dict[str, str]], tmp_path: Path) -> None:
    env = dict(stack_envs["file"], QUARRY_MIN_FREE_BYTES=str(1 << 60), QUARRY_HEALTH_FAILURES="2",
               QUARRY_STORAGE_URL=f"file://{tmp_path / 'objects'}")
    handle = start_server(env, tmp_path, "server-full", "file", ready_service="postgres")
    try:
        wait_for_status(handle.address, "object-store", NOT_SERVING)
        assert health_of(handle.address) == NOT_SERVING
        assert health_of(handle.address, "postgres") == SERVING and health_of(handle.address, "redis") == SERVING
        assert "dependency object-store is down:" in handle.process.log()
        assert "fewer than QUARRY_MIN_FREE_BYTES" in handle.process.log()
    finally:
        assert handle.process.stop() == 0
