"""GetDataset through the per-replica cache: served without Postgres while nothing changed, and never stale past
the notification of a change, whoever made it (this replica, another one, a worker, plain SQL).

The tests change rows behind the server's back to tell a cached answer from a fresh one: with triggers off
(`session_replication_role = replica`) a change announces nothing, so only a cache would keep the old value.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import grpc
import pytest
from google.protobuf import field_mask_pb2
from grpc import aio
from quarry.v1 import dataset_pb2
from quarry.v1 import dataset_service_pb2 as pb

from tests import test_datasets
from tests.support import Api, ServerHandle, error_info, open_api, start_server

# The dataset tests' fixtures (stubs and rows of the file-store server) and their create helper.
api, pool, create = test_datasets.api, test_datasets.pool, test_datasets.create


async def description_of(api: Api, name: str) -> str:
    return (await api.datasets.GetDataset(pb.GetDatasetRequest(name=name))).dataset.description


async def set_silently(pool: asyncpg.Pool, name: str, description: str) -> None:
    """Change a dataset's description in SQL with triggers off: nothing is announced."""
    namespace, dataset = name.split("/")[1], name.split("/")[3]
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("SET LOCAL session_replication_role = replica")
        changed = await connection.execute(
            """UPDATE datasets d SET description = $3 FROM namespaces n
               WHERE n.id = d.namespace_id AND n.name = $1 AND d.name = $2 AND d.state <> 'DELETED'""",
            namespace, dataset, description)
    assert changed == "UPDATE 1"


async def shows(api: Api, name: str, description: str, within: float = 2.0) -> float:
    """Seconds until GetDataset answers `description`; fails past `within`."""
    started = time.monotonic()
    while (seen := await description_of(api, name)) != description:
        assert time.monotonic() - started < within, f"still {seen!r} after {within} s, not {description!r}"
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def test_a_read_is_served_from_the_cache_until_a_change_is_announced(api: Api, pool: asyncpg.Pool) -> None:
    name = (await create(api, "cached", description="first")).name
    assert await description_of(api, name) == "first"  # now cached
    await set_silently(pool, name, "second")
    for _ in range(3):
        assert await description_of(api, name) == "first"  # unannounced: the replica's copy stands
    await pool.execute("SELECT pg_notify('quarry_dataset', $1)", name)
    await shows(api, name, "second")
    # A notification of another dataset drops nothing else.
    await set_silently(pool, name, "third")
    await pool.execute("SELECT pg_notify('quarry_dataset', $1)", name + "-other")
    assert await description_of(api, name) == "second"


async def test_any_change_to_the_row_is_announced(api: Api, pool: asyncpg.Pool) -> None:
    # A change made outside the server (as a worker's promotion or the sweep makes) reaches it by the trigger.
    name = (await create(api, "announced", description="first")).name
    assert await description_of(api, name) == "first"
    namespace, dataset = name.split("/")[1], name.split("/")[3]
    await pool.execute("""UPDATE datasets d SET description = 'by sql' FROM namespaces n
                          WHERE n.id = d.namespace_id AND n.name = $1 AND d.name = $2""", namespace, dataset)
    await shows(api, name, "by sql")


@pytest.fixture
async def unannounced(pool: asyncpg.Pool) -> AsyncIterator[None]:
    """Dataset changes announce nothing while the test runs (the trigger is off): what a replica then sees of
    its own writes is down to the write itself, not to a notification that happens to arrive first."""
    await pool.execute("ALTER TABLE datasets DISABLE TRIGGER datasets_changed")
    try:
        yield
    finally:
        await pool.execute("ALTER TABLE datasets ENABLE TRIGGER datasets_changed")


async def test_a_change_through_this_replica_shows_at_once(api: Api, unannounced: None) -> None:
    created = await create(api, "own", description="first")
    assert await description_of(api, created.name) == "first"
    for round_ in range(20):  # no wait at all: the write dropped this replica's copy before it answered
        text = f"changed {round_}"
        await api.datasets.UpdateDataset(pb.UpdateDatasetRequest(
            dataset=dataset_pb2.Dataset(name=created.name, description=text),
            update_mask=field_mask_pb2.FieldMask(paths=["description"])))
        assert await description_of(api, created.name) == text
    await api.datasets.DeleteDataset(pb.DeleteDatasetRequest(name=created.name))
    with pytest.raises(aio.AioRpcError) as gone:
        await description_of(api, created.name)
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND and error_info(gone.value)[0] == "DATASET_NOT_FOUND"
    # Absence is never cached: a dataset created under the name is there at once.
    await create(api, "own", description="again")
    assert await description_of(api, created.name) == "again"


async def test_an_inline_write_shows_its_version_at_once(api: Api, unannounced: None) -> None:
    created = await create(api, "inline")
    assert not (await api.datasets.GetDataset(pb.GetDatasetRequest(name=created.name))).dataset.current_version
    written = await api.datasets.WriteFile(pb.WriteFileRequest(parent=created.name, path="a.csv",
                                                               content=b"x,y\n1,2\n"))
    dataset = (await api.datasets.GetDataset(pb.GetDatasetRequest(name=created.name))).dataset
    assert dataset.current_version == written.version.name


@pytest.mark.slow
@pytest.mark.acceptance
async def test_a_change_through_another_replica_shows_within_its_notification(
        server_file: ServerHandle, stack_envs: dict[str, dict[str, str]], tmp_path: Path) -> None:
    first = open_api(server_file.address)
    second_server = await asyncio.to_thread(start_server, stack_envs["file"], tmp_path, "replica", "file")
    second = open_api(second_server.address, first.namespace)
    try:
        created = await create(first, "shared", description="first")
        lags = []
        for round_ in range(10):
            assert await description_of(second, created.name) == (f"v{round_ - 1}" if round_ else "first")
            await first.datasets.UpdateDataset(pb.UpdateDatasetRequest(
                dataset=dataset_pb2.Dataset(name=created.name, description=f"v{round_}"),
                update_mask=field_mask_pb2.FieldMask(paths=["description"])))
            lags.append(await shows(second, created.name, f"v{round_}", within=1.0))
        assert max(lags) < 1.0
        await first.datasets.DeleteDataset(pb.DeleteDatasetRequest(name=created.name))
        started = time.monotonic()
        while True:
            try:
                await description_of(second, created.name)
            except aio.AioRpcError as error:
                assert error_info(error)[0] == "DATASET_NOT_FOUND"
                break
            assert time.monotonic() - started < 1.0, "the other replica still serves a deleted dataset"
            await asyncio.sleep(0.01)
    finally:
        await first.channel.close()
        await second.channel.close()
        await asyncio.to_thread(second_server.process.stop)
