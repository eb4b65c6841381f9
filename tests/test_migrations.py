"""Migrations: each applied once, in order, under an advisory lock; the schema's constraints hold."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid

import asyncpg
import pytest

from server.embedded import EmbeddedPostgres
from server.storage.migrate import discover, migrate
from tests.conftest import create_database
from tests.support import ROOT, clean_env

SCHEMA_QUERY = """
    SELECT table_name, column_name, data_type, is_nullable, column_default
    FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2"""


@pytest.fixture
async def fresh_db(postgres: EmbeddedPostgres) -> str:
    return await create_database(postgres, f"mig_{uuid.uuid4().hex[:10]}")


async def test_applying_twice_changes_nothing(fresh_db: str) -> None:
    connection = await asyncpg.connect(fresh_db)
    try:
        first = await migrate(connection)
        assert first == [m.name for m in discover()]
        schema = await connection.fetch(SCHEMA_QUERY)
        history = await connection.fetch("SELECT version, checksum, applied_at FROM schema_migrations")
        assert await migrate(connection) == []
        assert await connection.fetch(SCHEMA_QUERY) == schema
        assert await connection.fetch("SELECT version, checksum, applied_at FROM schema_migrations") == history
    finally:
        await connection.close()


def test_two_processes_migrating_at_once_do_not_collide(fresh_db: str) -> None:
    env = clean_env(QUARRY_DATABASE_URL=fresh_db)
    processes = [subprocess.Popen([sys.executable, "-m", "quarry.cli", "migrate"], env=env, cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], outputs
    applied = sorted(out.strip() for out, _ in outputs)
    total = len(discover())
    # Exactly one process applied the migrations; the others waited on the lock and found nothing to do.
    assert applied[:2] == ["applied 0 migration(s)"] * 2
    assert applied[2].startswith(f"applied {total} migration(s)")

    async def count() -> int:
        connection = await asyncpg.connect(fresh_db)
        try:
            return int(await connection.fetchval("SELECT count(*) FROM schema_migrations"))
        finally:
            await connection.close()

    assert asyncio.run(count()) == total


async def test_an_edited_migration_is_refused(fresh_db: str) -> None:
    connection = await asyncpg.connect(fresh_db)
    try:
        await migrate(connection)
        await connection.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
        with pytest.raises(Exception, match="changed after it was applied"):
            await migrate(connection)
    finally:
        await connection.close()


@pytest.fixture
async def schema(fresh_db: str) -> asyncpg.Connection:
    connection = await asyncpg.connect(fresh_db)
    await migrate(connection)
    yield connection
    await connection.close()


async def _namespace(connection: asyncpg.Connection) -> uuid.UUID:
    return await connection.fetchval("INSERT INTO namespaces (name) VALUES ($1) RETURNING id", uuid.uuid4().hex[:8])


async def test_live_dataset_names_are_unique_and_deleted_ones_free_their_name(schema: asyncpg.Connection) -> None:
    ns = await _namespace(schema)
    first = await schema.fetchval("INSERT INTO datasets (namespace_id, name) VALUES ($1, 'sales') RETURNING id", ns)
    with pytest.raises(asyncpg.UniqueViolationError):
        await schema.execute("INSERT INTO datasets (namespace_id, name) VALUES ($1, 'sales')", ns)
    await schema.execute("UPDATE datasets SET state = 'DELETED', delete_time = now() WHERE id = $1", first)
    await schema.execute("INSERT INTO datasets (namespace_id, name) VALUES ($1, 'sales')", ns)


@pytest.mark.parametrize("name", ["Sales", "", "-x", "a" * 64, "sp ace", "a/b"])
async def test_dataset_names_are_checked(schema: asyncpg.Connection, name: str) -> None:
    ns = await _namespace(schema)
    with pytest.raises(asyncpg.CheckViolationError):
        await schema.execute("INSERT INTO datasets (namespace_id, name) VALUES ($1, $2)", ns, name)


async def test_version_numbers_are_unique_per_dataset(schema: asyncpg.Connection) -> None:
    ns = await _namespace(schema)
    ds = await schema.fetchval("INSERT INTO datasets (namespace_id, name) VALUES ($1, 'd') RETURNING id", ns)
    insert = ("INSERT INTO versions (dataset_id, number, state, ready_time) "
              "VALUES ($1, $2, 'READY', now())")
    await schema.execute(insert, ds, 1)
    with pytest.raises(asyncpg.UniqueViolationError):
        await schema.execute(insert, ds, 1)
    # A number exists exactly when the version is READY.
    with pytest.raises(asyncpg.CheckViolationError):
        await schema.execute("INSERT INTO versions (dataset_id, number, state) VALUES ($1, 2, 'PENDING')", ds)


@pytest.mark.parametrize("table", ["uploads", "versions", "datasets"])
async def test_states_are_checked(schema: asyncpg.Connection, table: str) -> None:
    [constraint] = await schema.fetch(
        """SELECT c.conname FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid
           WHERE t.relname = $1 AND pg_get_constraintdef(c.oid) LIKE 'CHECK ((state = ANY %'""", table)
    ns = await _namespace(schema)
    ds = await schema.fetchval("INSERT INTO datasets (namespace_id, name) VALUES ($1, 'd') RETURNING id", ns)
    rows = {
        "datasets": ds,
        "versions": await schema.fetchval("INSERT INTO versions (dataset_id) VALUES ($1) RETURNING id", ds),
        "uploads": await schema.fetchval(
            """INSERT INTO uploads (namespace_id, dataset_id, path, part_size, staging_key, expire_time, size_bytes)
               VALUES ($1, $2, 'f.csv', 5242880, 'k', now(), 0) RETURNING id""", ns, ds),
    }
    # An unknown state is refused by the state's own constraint, whether a row changes to it or starts in it.
    with pytest.raises(asyncpg.CheckViolationError) as updated:
        await schema.execute(f"UPDATE {table} SET state = 'BOGUS' WHERE id = $1", rows[table])
    assert updated.value.constraint_name == constraint["conname"]
    inserts = {
        "datasets": ("INSERT INTO datasets (namespace_id, name, state) VALUES ($1, 'e', 'BOGUS')", ns),
        "versions": ("INSERT INTO versions (dataset_id, state) VALUES ($1, 'BOGUS')", ds),
        "uploads": ("""INSERT INTO uploads (namespace_id, dataset_id, path, part_size, staging_key, expire_time,
                                           size_bytes, state)
                       VALUES ($1, $2, 'g.csv', 5242880, 'k2', now(), 0, 'BOGUS')""", ns, ds),
    }
    query, *args = inserts[table]
    with pytest.raises(asyncpg.CheckViolationError) as inserted:
        await schema.execute(query, *args)
    assert inserted.value.constraint_name == constraint["conname"]
    assert await schema.fetchval(f"SELECT state FROM {table} WHERE id = $1", rows[table]) != "BOGUS"


@pytest.mark.parametrize("path", ["../x", "/abs", "a//b", "a/../b", "dir/", "a/./b", "x" * 1025])
async def test_upload_paths_are_checked(schema: asyncpg.Connection, path: str) -> None:
    ns = await _namespace(schema)
    ds = await schema.fetchval("INSERT INTO datasets (namespace_id, name) VALUES ($1, 'd') RETURNING id", ns)
    with pytest.raises(asyncpg.CheckViolationError):
        await schema.execute(
            """INSERT INTO uploads (namespace_id, dataset_id, path, part_size, staging_key, expire_time)
               VALUES ($1, $2, $3, 5242880, $4, now())""", ns, ds, path, uuid.uuid4().hex)


async def test_foreign_keys_hold(schema: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await schema.execute("INSERT INTO datasets (namespace_id, name) VALUES ($1, 'x')", uuid.uuid4())


async def test_upload_state_changes_are_notified(schema: asyncpg.Connection, fresh_db: str) -> None:
    listener = await asyncpg.connect(fresh_db)
    heard: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener("quarry_upload_state", lambda *args: heard.put_nowait(args[3]))
    try:
        ns = await _namespace(schema)
        ds = await schema.fetchval("INSERT INTO datasets (namespace_id, name) VALUES ($1, 'd') RETURNING id", ns)
        upload = await schema.fetchval(
            """INSERT INTO uploads (namespace_id, dataset_id, path, part_size, staging_key, expire_time)
               VALUES ($1, $2, 'f.csv', 5242880, 'k', now()) RETURNING id""", ns, ds)
        assert await asyncio.wait_for(heard.get(), 5) == f"{upload}:OPEN"
        await schema.execute("UPDATE uploads SET state = 'CANCELLED' WHERE id = $1", upload)
        assert await asyncio.wait_for(heard.get(), 5) == f"{upload}:CANCELLED"
        await schema.execute("UPDATE uploads SET content_type = 'x' WHERE id = $1", upload)  # not a state change
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(heard.get(), 0.5)
    finally:
        await listener.close()


async def test_stored_failures_name_their_kind_not_a_class(fresh_db: str) -> None:
    # Before 0002 a failure recorded the Python class that raised it; the migration turns each into its kind,
    # and from then on only a known kind can be stored.
    connection = await asyncpg.connect(fresh_db)
    try:
        await migrate(connection, up_to=1)
        ns = await _namespace(connection)
        ds = await connection.fetchval("INSERT INTO datasets (namespace_id, name) VALUES ($1, 'd') RETURNING id", ns)
        legacy = {"ChecksumMismatch": "DATA_LOSS", "RuleViolation": "FAILED_PRECONDITION",
                  "InvalidFile": "INVALID_ARGUMENT", "Unavailable": "UNAVAILABLE", "SomethingRenamed": "INTERNAL"}
        uploads = {}
        for index, kind in enumerate(legacy):
            uploads[kind] = await connection.fetchval(
                """INSERT INTO uploads (namespace_id, dataset_id, path, part_size, staging_key, expire_time,
                                        size_bytes, state, failure)
                   VALUES ($1, $2, $3, 5242880, $4, now(), 0, 'FAILED', $5::jsonb) RETURNING id""",
                ns, ds, f"f{index}.csv", f"k{index}",
                f'{{"kind": "{kind}", "reason": "R", "message": "m", "path": "", "retryable": false}}')
        version = await connection.fetchval(
            """INSERT INTO versions (dataset_id, state, failure)
               VALUES ($1, 'FAILED', '{"kind": "BaseMoved", "reason": "BASE_MOVED", "message": "m"}') RETURNING id""",
            ds)
        assert await migrate(connection) == [m.name for m in discover()][1:]
        for kind, expected in legacy.items():
            stored = await connection.fetchval("SELECT failure->>'kind' FROM uploads WHERE id = $1", uploads[kind])
            assert stored == expected, kind
        assert await connection.fetchval("SELECT failure->>'kind' FROM versions WHERE id = $1",
                                         version) == "FAILED_PRECONDITION"
        with pytest.raises(asyncpg.CheckViolationError):
            await connection.execute("""UPDATE uploads SET failure = jsonb_set(failure, '{kind}', '"DataLoss"')
                                        WHERE id = $1""", uploads["ChecksumMismatch"])
    finally:
        await connection.close()
