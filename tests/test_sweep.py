"""The sweep: expiry, lost enqueues, orphaned bytes and garbage collection, each safe to run twice.

Runs the domain services in this process on a database, queue and store of its own, with short deadlines.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.domain.caller import Caller
from server.domain.services import Services
from server.domain.upload_stream import Chunk, Finish, StreamMessage
from server.domain.uploads import NewUpload
from server.embedded import EmbeddedRedis
from server.model.namespaces import Quota
from server.model.uploads import UploadState
from server.model.versions import VersionState
from server.storage import uploads as uploads_repo
from tests.conftest import create_database, redis_url
from tests.inprocess import in_process
from tests.samples import csv_sample
from workers.runtime import JobContext, build_worker, run_worker_until_stopped
from workers.worker import JOBS

CALLER = Caller("sweeping")


@pytest.fixture
async def services(stack_envs: dict[str, dict[str, str]], postgres: object, redis_server: EmbeddedRedis,
                   tmp_path: Path) -> AsyncIterator[Services]:
    env = dict(stack_envs["file"], QUARRY_DATABASE_URL=await create_database(postgres, "sweep"),  # type: ignore[arg-type]
               QUARRY_REDIS_URL=redis_url(redis_server, 9), QUARRY_STORAGE_URL=f"file://{tmp_path / 'objects'}")
    async with in_process(env, QUARRY_STUCK_AFTER_SECONDS="0.2", QUARRY_GC_GRACE_SECONDS="0.5",
                          QUARRY_DELETED_RETENTION_DAYS=repr(0.5 / 86400),
                          QUARRY_UPLOAD_EXPIRY_SECONDS="1") as built:
        await built.namespaces.create(CALLER, CALLER.namespace, Quota(), None)
        yield built


async def messages(data: bytes, finish: bool = True) -> AsyncIterator[StreamMessage]:
    for start in range(0, len(data), 1 << 20):
        yield Chunk(data[start:start + (1 << 20)])
    if finish:
        yield Finish()


async def nothing(_: object) -> None:
    return None


async def test_expired_uploads_lose_their_bytes(services: Services) -> None:
    upload, _ = await services.uploads.create(CALLER, "", NewUpload("ds", "big.bin", declared_size=40 << 20))
    await services.upload_stream.write(CALLER, upload.name, 0, messages(os.urandom(16 << 20), finish=False),
                                       nothing)
    assert [m async for m in services.uploads.store.list_multipart(upload.staging_key)]
    await asyncio.sleep(1.1)  # under test: the upload's 1 s expiry passes
    first = await services.sweeper.sweep()
    assert first.expired == 1 and not first.errors
    expired = await services.uploads.load(CALLER, upload.name)
    assert expired.state == UploadState.EXPIRED
    assert [m async for m in services.uploads.store.list_multipart(upload.staging_key)] == []
    second = await services.sweeper.sweep()
    assert second.expired == 0 and second.purged == 0


async def test_a_lost_enqueue_is_queued_again(services: Services) -> None:
    sample = csv_sample(10)
    upload, _ = await services.uploads.create(CALLER, "", NewUpload("ds", sample.path, len(sample.data)))
    await services.upload_stream.write(CALLER, upload.name, 0, messages(sample.data), nothing)
    await services.uploads.queue._redis.flushdb()  # the enqueue after STAGED was lost
    await asyncio.sleep(0.3)  # under test: the upload is stuck past QUARRY_STUCK_AFTER_SECONDS (0.2)
    report = await services.sweeper.sweep()
    assert report.requeued_uploads == 1
    assert f"validate_upload:{upload.id}" in await services.uploads.queue.queued_job_ids()
    await services.sweeper.sweep()  # twice: still one job
    assert (await services.uploads.queue.queued_job_ids()).count(f"validate_upload:{upload.id}") == 1


async def test_an_auto_commit_that_gave_up_is_committed_again(services: Services) -> None:
    sample = csv_sample(10)
    upload, _ = await services.uploads.create(CALLER, "", NewUpload("auto", sample.path, len(sample.data)))
    await services.upload_stream.write(CALLER, upload.name, 0, messages(sample.data), nothing)
    await services.pipeline.validate_upload(upload.id)
    await services.uploads.queue._redis.flushdb()  # that job has run: it is no longer queued
    async with services.db.connection() as connection:
        # What an auto-commit upload looks like when its commit exhausted its retries (Postgres went away
        # between validation and commit, which this test cannot arrange): VALIDATED and in no version.
        await connection.execute("UPDATE uploads SET auto_commit = true WHERE id = $1", upload.id)
    await asyncio.sleep(0.3)  # under test: stuck past QUARRY_STUCK_AFTER_SECONDS (0.2)
    report = await services.sweeper.sweep()
    assert report.requeued_uploads == 1
    assert f"validate_upload:{upload.id}" in await services.uploads.queue.queued_job_ids()
    await services.pipeline.validate_upload(upload.id)  # the job the sweep queued
    committed = await services.uploads.load(CALLER, upload.name)
    assert committed.version_id is not None
    await services.pipeline.promote_version(committed.version_id)
    assert (await services.uploads.load(CALLER, upload.name)).state == UploadState.PROMOTED
    await asyncio.sleep(0.3)  # under test: as long as it would take to count as stuck, and it is not
    assert (await services.sweeper.sweep()).requeued_uploads == 0


async def test_a_crashed_job_keeps_the_bytes_for_a_retry(services: Services, redis_server: EmbeddedRedis) -> None:
    queue = services.uploads.queue
    await queue._redis.flushdb()  # only this test's job for the worker below
    sample = csv_sample(10)
    upload, _ = await services.uploads.create(CALLER, "", NewUpload("crash", sample.path, len(sample.data)))
    await services.upload_stream.write(CALLER, upload.name, 0, messages(sample.data), nothing)
    async with services.db.connection() as connection:
        # A format no code knows: reading the rules raises ValueError, a crash (a bug), not a domain error.
        await connection.execute("""UPDATE datasets SET rules = '{"allowed_formats": ["NOPE"]}' WHERE id = $1""",
                                 upload.dataset_id)

    async def on_startup(ctx: JobContext) -> None:
        ctx["services"] = services

    # The real job wrapper, in a burst-mode worker: it runs the queued validation and stops.
    await run_worker_until_stopped(build_worker(redis_url(redis_server, 9), JOBS, [], on_startup=on_startup,
                                                max_jobs=1, job_timeout=30, max_tries=3,
                                                burst=True))
    failed = await services.uploads.load(CALLER, upload.name)
    assert failed.state == UploadState.FAILED and failed.failure is not None
    assert (failed.failure.reason, failed.failure.retryable) == ("JOB_CRASHED", True)
    report = await services.sweeper.sweep()
    assert report.purged == 0 and await services.uploads.store.exists(upload.staging_key)
    async with services.db.connection() as connection:
        await connection.execute("UPDATE datasets SET rules = '{}' WHERE id = $1", upload.dataset_id)
    assert (await services.uploads.retry(CALLER, upload.name)).state == UploadState.STAGED
    await services.pipeline.validate_upload(upload.id)
    assert (await services.uploads.load(CALLER, upload.name)).state == UploadState.VALIDATED


async def test_orphaned_staging_bytes_are_removed(services: Services) -> None:
    store = services.uploads.store
    orphan = f"staging/{CALLER.namespace}/{uuid.uuid4()}"

    async def one(data: bytes) -> AsyncIterator[bytes]:
        yield data

    await store.put(orphan, one(b"left behind by a crash"))
    stray = await store.create_multipart(f"staging/{CALLER.namespace}/{uuid.uuid4()}")
    kept, _ = await services.uploads.create(CALLER, "", NewUpload("ds", "open.bin"))
    await asyncio.sleep(0.6)  # under test: the orphans are older than the grace period (0.5 s)
    report = await services.sweeper.sweep()
    assert report.orphans_removed == 2
    assert await store.stat(orphan) is None
    remaining = {m.upload_id async for m in store.list_multipart("staging/")}
    assert stray not in remaining and kept.store_upload_id in remaining  # an OPEN upload keeps its write


async def test_unreferenced_objects_are_collected_after_the_grace(services: Services) -> None:
    sample = csv_sample(20)
    upload, _ = await services.uploads.create(CALLER, "", NewUpload("gc", sample.path, len(sample.data),
                                                                     auto_commit=True))
    await services.upload_stream.write(CALLER, upload.name, 0, messages(sample.data), nothing)
    await services.pipeline.validate_upload(upload.id)
    await services.uploads.queue._redis.flushdb()  # that job has run: it is no longer queued
    async with services.db.connection() as connection:
        promoted = await uploads_repo.get(connection, upload.id)
    assert promoted is not None and promoted.version_id is not None
    await services.pipeline.promote_version(promoted.version_id)
    version = await services.versions.get(CALLER, f"namespaces/{CALLER.namespace}/datasets/gc/versions/1",
                                          with_files=True)
    assert version.state == VersionState.READY
    key = version.files[0].object_key
    store = services.uploads.store
    await asyncio.sleep(0.6)  # under test: older than QUARRY_GC_GRACE_SECONDS (0.5), yet referenced
    assert (await services.sweeper.sweep()).objects_collected == 0  # still referenced
    assert await store.exists(key)
    await services.datasets.delete(CALLER, f"namespaces/{CALLER.namespace}/datasets/gc", "")
    await asyncio.sleep(0.6)  # under test: deleted longer than the retention, unreferenced longer than the grace
    report = await services.sweeper.sweep()
    assert report.datasets_purged == 1 and report.objects_collected == 1
    assert not await store.exists(key)
    again = await services.sweeper.sweep()
    assert again.objects_collected == 0 and again.datasets_purged == 0
