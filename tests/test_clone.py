"""CloneDataset and UndeleteDataset, and what the sweep does with their datasets' objects.

The use cases run in this process on a database and store of their own, over a store that counts every call
and byte (a clone must make none), with a retention period of about a second so that purges happen here.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.domain.caller import Caller
from server.domain.datasets import NewDataset
from server.domain.lifecycle import CloneRequest
from server.domain.services import Services
from server.domain.uploads import NewUpload
from server.embedded import EmbeddedRedis
from server.model.datasets import DatasetState
from server.model.errors import AlreadyExists, FailedPrecondition, NotFound, PermissionDenied, WrongState
from server.model.identity import Grant, Principal, Role
from server.model.namespaces import Quota
from server.model.versions import VersionState
from server.storage import sweeping
from tests.conftest import create_database, redis_url
from tests.lifecycle_support import CountingStore, counted_services, messages, nothing, publish
from tests.samples import binary_sample, csv_sample, parquet_sample
from tests.support import eventually

CALLER = Caller("cloning")
OTHER = "cloning-other"
RETENTION_DAYS = 1.5 / 86400  # 1.5 s


def ds(name: str, namespace: str = CALLER.namespace) -> str:
    return f"namespaces/{namespace}/datasets/{name}"


@pytest.fixture
async def lifecycle(stack_envs: dict[str, dict[str, str]], postgres: object, redis_server: EmbeddedRedis,
                    tmp_path: Path) -> AsyncIterator[tuple[Services, CountingStore]]:
    env = dict(stack_envs["file"], QUARRY_DATABASE_URL=await create_database(postgres, "clone"),  # type: ignore[arg-type]
               QUARRY_REDIS_URL=redis_url(redis_server, 3), QUARRY_STORAGE_URL=f"file://{tmp_path / 'objects'}")
    async with counted_services(env, QUARRY_GC_GRACE_SECONDS="0.2",
                                QUARRY_DELETED_RETENTION_DAYS=repr(RETENTION_DAYS)) as built:
        services, _ = built
        await services.namespaces.create(CALLER, CALLER.namespace, Quota(), None)
        await services.namespaces.create(CALLER, OTHER, Quota(), None)
        yield built


async def fresh_keys(services: Services) -> set[str]:
    return {o.key async for o in services.uploads.store.list_objects("fresh/")}


async def counts(services: Services) -> tuple[int, int, int]:
    async with services.db.connection() as connection:
        row = await connection.fetchrow("""SELECT (SELECT count(*) FROM datasets) AS d, (SELECT count(*) FROM versions)
                                           AS v, (SELECT count(*) FROM version_files) AS f""")
    return row["d"], row["v"], row["f"]


async def test_a_clone_lists_the_source_files_and_moves_no_bytes(
        lifecycle: tuple[Services, CountingStore]) -> None:
    services, store = lifecycle
    first = await publish(services, CALLER, "src", [csv_sample(300), parquet_sample(2000), binary_sample(300_000)])
    second = await publish(services, CALLER, "src", [csv_sample(50, path="extra.csv")])
    keys = await fresh_keys(services)
    store.reset()
    dataset, version = await services.lifecycle.clone(CALLER, CloneRequest(f"{ds('src')}/versions/1", "", "copy"))
    assert store.calls == [] and store.bytes_read == store.bytes_written == 0  # not one call to the store
    assert await fresh_keys(services) == keys
    assert dataset.state == DatasetState.ACTIVE and dataset.current_version_number == 1
    assert version.state == VersionState.READY and version.number == 1 and version.cloned_from == first.name
    assert (version.file_count, version.total_bytes, version.total_rows) == \
        (first.file_count, first.total_bytes, first.total_rows)
    cloned = await services.versions.get(CALLER, f"{ds('copy')}/versions/1", with_files=True)
    assert [(f.path, f.object_key, f.sha256) for f in cloned.files] == \
        [(f.path, f.object_key, f.sha256) for f in first.files]
    # The clone's files read like the source's, and its version 2 builds on them.
    preview = await services.files.preview(CALLER, f"{ds('copy')}/versions/1", "data/table.csv", 5)
    assert preview.row_count == 5 and preview.total_rows == 300
    # Without a version: the current one (2).
    _, latest = await services.lifecycle.clone(CALLER, CloneRequest(ds("src"), "", "copy-latest"))
    assert latest.cloned_from == second.name and latest.file_count == 4
    # Into another namespace: writer there, reader on the source is enough.
    clone_caller = Caller(OTHER, Principal("cloner", "t1", (Grant(OTHER, Role.WRITER),
                                                            Grant(CALLER.namespace, Role.READER))), Role.WRITER)
    other, _ = await services.lifecycle.clone(clone_caller, CloneRequest(ds("src"), f"namespaces/{OTHER}", "mine"))
    assert other.namespace == OTHER and other.rules == dataset.rules


async def test_a_clone_request_id_replays_and_a_refused_clone_leaves_nothing(
        lifecycle: tuple[Services, CountingStore]) -> None:
    services, store = lifecycle
    await publish(services, CALLER, "src", [csv_sample(20)])
    await services.datasets.create(CALLER, "", NewDataset("taken"))
    before = await counts(services)
    store.reset()
    with pytest.raises(AlreadyExists) as taken:
        await services.lifecycle.clone(CALLER, CloneRequest(ds("src"), "", "taken"))
    assert taken.value.reason == "DATASET_ALREADY_EXISTS"
    with pytest.raises(NotFound) as missing:
        await services.lifecycle.clone(CALLER, CloneRequest(ds("nothing"), "", "new"))
    assert missing.value.reason == "DATASET_NOT_FOUND"
    # A version still being built cannot be cloned.
    sample = csv_sample(10, path="late.csv")
    upload, _ = await services.uploads.create(CALLER, "", NewUpload("src", sample.path, len(sample.data)))
    await services.upload_stream.write(CALLER, upload.name, 0, messages(sample.data), nothing)  # STAGED
    pending = await services.versions.commit(CALLER, ds("src"), "", [upload.name], [], "m", "")
    after_commit = await counts(services)
    with pytest.raises(WrongState) as building:
        await services.lifecycle.clone(CALLER, CloneRequest(f"{ds('src')}/versions/{pending.id}", "", "new"))
    assert building.value.reason == "VERSION_NOT_READY"
    # A writer here with no grant on the source's namespace, or a reader only: refused before anything is read.
    stranger = Caller(OTHER, Principal("stranger", "t2", (Grant(OTHER, Role.WRITER),)), Role.WRITER)
    with pytest.raises(PermissionDenied) as denied:
        await services.lifecycle.clone(stranger, CloneRequest(ds("src"), f"namespaces/{OTHER}", "new"))
    assert denied.value.reason == "NAMESPACE_NOT_GRANTED"
    reader = Caller(OTHER, Principal("reader", "t3", (Grant(OTHER, Role.READER), Grant(CALLER.namespace, Role.ADMIN))),
                    Role.WRITER)
    with pytest.raises(PermissionDenied) as low:
        await services.lifecycle.clone(reader, CloneRequest(ds("src"), f"namespaces/{OTHER}", "new"))
    assert low.value.reason == "ROLE_REQUIRED"
    assert await counts(services) == after_commit and after_commit[0] == before[0]
    assert store.calls.count("put") == store.calls.count("copy") == 0
    request = CloneRequest(ds("src"), "", "once", request_id="clone-1")
    made, version = await services.lifecycle.clone(CALLER, request)
    again, same = await services.lifecycle.clone(CALLER, request)
    assert (again.id, same.id) == (made.id, version.id)


async def test_the_collector_keeps_every_object_a_clone_lists(lifecycle: tuple[Services, CountingStore]) -> None:
    services, _ = lifecycle
    shared = await publish(services, CALLER, "src", [csv_sample(40), binary_sample(50_000)])
    await services.lifecycle.clone(CALLER, CloneRequest(ds("src"), "", "copy"))
    only_source = await publish(services, CALLER, "src", [csv_sample(7, path="own.csv")])
    own_key = next(f.object_key for f in only_source.files if f.path == "own.csv")
    shared_keys = {f.object_key for f in shared.files}
    await services.datasets.delete(CALLER, ds("src"), "")

    async def purged() -> bool:
        return (await services.sweeper.sweep()).datasets_purged == 1

    await eventually(purged, "the deleted source purged after its retention", timeout=20)
    # The source's rows are gone; the object only it listed goes once past the grace period; the shared ones stay.
    async def collected() -> bool:
        await services.sweeper.sweep()
        return own_key not in await fresh_keys(services)

    await eventually(collected, "the source's own object collected", timeout=20)
    assert shared_keys <= await fresh_keys(services)
    for _ in range(2):
        assert (await services.sweeper.sweep()).objects_collected == 0
    assert shared_keys <= await fresh_keys(services)
    read = await services.files.read(CALLER, f"{ds('copy')}/versions/1", "blob.bin", 0, 0)
    assert sum([len(c) async for _, c in read.chunks()]) == 50_000
    async with services.db.connection() as connection:
        assert await connection.fetchval("SELECT count(*) FROM datasets WHERE name = 'src'") == 0
        assert await connection.fetchval("SELECT count(*) FROM fresh_objects WHERE key = ANY($1) AND dataset_id IS "
                                         "NULL", list(shared_keys)) == len(shared_keys)
    # Once the clone goes too, nothing lists them: collected.
    await services.datasets.delete(CALLER, ds("copy"), "")

    async def all_gone() -> bool:
        await services.sweeper.sweep()
        return not shared_keys & await fresh_keys(services)

    await eventually(all_gone, "the shared objects collected once no version lists them", timeout=20)


async def test_undelete_within_the_retention_and_its_refusals(lifecycle: tuple[Services, CountingStore]) -> None:
    services, _ = lifecycle
    published = await publish(services, CALLER, "kept", [csv_sample(30)])
    await services.datasets.delete(CALLER, ds("kept"), "")
    restored = await services.lifecycle.undelete(CALLER, ds("kept"))
    assert restored.state == DatasetState.ACTIVE and restored.current_version_id == published.id
    assert (await services.versions.get(CALLER, f"{ds('kept')}/versions/1")).file_count == 1
    with pytest.raises(NotFound) as live:  # nothing deleted under that name any more
        await services.lifecycle.undelete(CALLER, ds("kept"))
    assert live.value.reason == "DATASET_NOT_FOUND"
    # A live dataset took the name: refused, and both stay as they are.
    await services.datasets.delete(CALLER, ds("kept"), "")
    await services.datasets.create(CALLER, "", NewDataset("kept"))
    with pytest.raises(AlreadyExists) as taken:
        await services.lifecycle.undelete(CALLER, ds("kept"))
    assert taken.value.reason == "DATASET_ALREADY_EXISTS"
    current = await services.datasets.get(CALLER, ds("kept"))
    assert current.state == DatasetState.DRAFT and current.id != published.dataset_id
    # Past the retention period: refused, still DELETED; then purged, and not found at all.
    await services.datasets.delete(CALLER, ds("kept"), "")

    async def expired() -> bool:
        # The later deletion, the one undelete would restore: once it is past the retention, so is the first.
        async with services.db.connection() as connection:
            return await sweeping.deleted_longer_than(connection, current.id, RETENTION_DAYS * 86400)

    await eventually(expired, "the last deletion past the retention period", timeout=20)
    with pytest.raises(FailedPrecondition) as late:
        await services.lifecycle.undelete(CALLER, ds("kept"))
    assert late.value.reason == "RETENTION_EXPIRED"
    async with services.db.connection() as connection:
        states = await connection.fetch("SELECT state FROM datasets WHERE name = 'kept'")
    assert {r["state"] for r in states} == {"DELETED"}

    async def purged() -> bool:
        await services.sweeper.sweep()
        async with services.db.connection() as connection:
            return await connection.fetchval("SELECT count(*) FROM datasets WHERE name = 'kept'") == 0

    await eventually(purged, "both deleted datasets purged", timeout=20)
    with pytest.raises(NotFound) as gone:
        await services.lifecycle.undelete(CALLER, ds("kept"))
    assert gone.value.reason == "DATASET_NOT_FOUND"


async def test_a_purge_waits_for_an_open_upload(lifecycle: tuple[Services, CountingStore]) -> None:
    services, _ = lifecycle
    await publish(services, CALLER, "busy", [csv_sample(5)])
    upload, _ = await services.uploads.create(CALLER, "", NewUpload("busy", f"{uuid.uuid4().hex}.csv", 10))
    await services.datasets.delete(CALLER, ds("busy"), "")

    async def expired() -> bool:
        async with services.db.connection() as connection:
            return await connection.fetchval("SELECT delete_time < now() - interval '2 seconds' FROM datasets "
                                             "WHERE name = 'busy'")

    await eventually(expired, "the deletion past the retention period", timeout=20)
    assert (await services.sweeper.sweep()).datasets_purged == 0  # a client may still be writing
    await services.uploads.cancel(CALLER, upload.name)

    async def purged() -> bool:
        return (await services.sweeper.sweep()).datasets_purged == 1

    await eventually(purged, "the dataset purged once its upload ended", timeout=20)
