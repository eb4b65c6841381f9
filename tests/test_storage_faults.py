"""Driver errors become domain errors with a precise reason: real Postgres faults through `Database`, a Redis
that went away under `JobQueue`. Callers (and clients) switch on these reasons: retry or not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from server.embedded import EmbeddedPostgres, EmbeddedRedis
from server.model.errors import Aborted, AlreadyExists, Internal, Unavailable
from server.storage.db import Database, pool_of
from server.storage.jobqueue import JobQueue
from tests.conftest import create_database


@pytest.fixture(scope="module")
async def database(postgres: EmbeddedPostgres) -> AsyncIterator[Database]:
    dsn = await create_database(postgres, "faults")
    async with pool_of(dsn, timeout=10, max_size=4) as pool:
        async with pool.acquire() as connection:
            await connection.execute("CREATE TABLE things (id int PRIMARY KEY)")
            await connection.execute("INSERT INTO things VALUES (1)")
        yield Database(pool)


async def test_a_unique_violation_is_already_exists(database: Database) -> None:
    with pytest.raises(AlreadyExists) as raised:
        async with database.transaction() as connection:
            await connection.execute("INSERT INTO things VALUES (1)")
    assert raised.value.reason == "ALREADY_EXISTS"
    assert raised.value.metadata == {"constraint": "things_pkey"}


async def test_a_lock_held_elsewhere_is_a_retryable_concurrent_change(database: Database) -> None:
    async with database.transaction() as holder:
        await holder.execute("SELECT * FROM things WHERE id = 1 FOR UPDATE")
        with pytest.raises(Aborted) as raised:
            async with database.transaction() as other:
                await other.execute("SELECT * FROM things WHERE id = 1 FOR UPDATE NOWAIT")
    assert (raised.value.reason, raised.value.retryable) == ("CONCURRENT_CHANGE", True)


async def test_a_connection_killed_mid_query_is_unavailable(database: Database, postgres: EmbeddedPostgres) -> None:
    async def slow() -> None:
        async with database.connection() as connection:
            await connection.execute("SELECT pg_sleep(30) /* doomed */")

    query = asyncio.ensure_future(slow())
    killer = await asyncpg.connect(postgres.url)
    try:
        deadline = time.monotonic() + 10
        while not (pid := await killer.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE query LIKE '%doomed%' AND pid <> pg_backend_pid()")):
            assert time.monotonic() < deadline and not query.done(), "the query never started"
            await asyncio.sleep(0.02)
        assert await killer.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await killer.close()
    with pytest.raises(Unavailable) as raised:
        await query
    assert (raised.value.reason, raised.value.retryable) == ("DATABASE_UNAVAILABLE", True)
    async with database.connection() as connection:  # the pool replaces the dead connection
        assert await connection.fetchval("SELECT count(*) FROM things") == 1


async def test_any_other_database_error_is_internal(database: Database) -> None:
    with pytest.raises(Internal) as raised:
        async with database.connection() as connection:
            await connection.fetchval("SELECT 1 / 0")
    assert raised.value.reason == "DATABASE_ERROR"
    assert "22012" in raised.value.message  # the SQLSTATE (division_by_zero), for the log


async def test_a_queue_whose_redis_went_away_is_unavailable(tmp_path: Path) -> None:
    redis = EmbeddedRedis(tmp_path / "redis", persistent=False)
    redis.start()
    queue = await JobQueue.connect(redis.url, timeout=10)
    try:
        assert await queue.enqueue("validate_upload", "x", job_id="faults:1")
        await queue.ping()
        redis.stop()
        with pytest.raises(Unavailable) as raised:
            await queue.enqueue("validate_upload", "y", job_id="faults:2")
        assert (raised.value.reason, raised.value.retryable) == ("QUEUE_UNAVAILABLE", True)
        with pytest.raises(Unavailable) as raised:
            await queue.ping()
        assert raised.value.reason == "QUEUE_UNAVAILABLE"
    finally:
        await queue.close()
        redis.stop()
