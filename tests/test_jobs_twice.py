"""The jobs from their middle states, two copies at once: STAGED, VALIDATING (a validation killed midway),
PROMOTING (a promotion killed after copying a file).

Two workers are two sets of domain services in this process, each with its own pools, on the idle stack's
database and on a real store (both kinds), so only the jobs this test runs ever touch its rows. A job is
"killed" by cancelling it while it hangs at a chosen point of its real run: what a worker killed there leaves
behind (its transaction, if one was open, rolls back as it would on a dropped connection).

Whatever the start, the end is the same: one READY version with the right files, one fresh object per
content, no staging bytes, no open multipart write. Running every job again (two copies at once) changes
nothing: rows (uploads, parts, versions, version files, objects), staging and fresh objects alike.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from server.domain.caller import Caller
from server.domain.services import Services
from server.domain.upload_stream import Chunk, Finish, StreamMessage
from server.domain.uploads import NewUpload
from server.model.errors import DataLoss
from server.model.namespaces import Quota
from server.model.objects import ObjectStore
from server.model.uploads import Upload, UploadState
from tests.conftest import STORE_KINDS
from tests.inprocess import in_process
from tests.samples import Sample, binary_sample, csv_sample, jsonl_sample

Workers = tuple[Services, Services]


@pytest.fixture(params=STORE_KINDS)
async def workers(request: pytest.FixtureRequest, idle_envs: dict[str, dict[str, str]]) -> AsyncIterator[Workers]:
    env = idle_envs[request.param]
    async with in_process(env) as first, in_process(env) as second:
        yield first, second


@pytest.fixture
async def caller(workers: Workers) -> Caller:
    """An in-process caller, in a namespace of its own (created as an operator would)."""
    made = Caller(f"t-{uuid.uuid4().hex[:12]}")
    await workers[0].namespaces.create(made, made.namespace, Quota(), None)
    return made


SAMPLES = [csv_sample(2000, path="a.csv"), jsonl_sample(300, path="b.jsonl"), binary_sample(300_000, path="c.bin")]


async def _messages(data: bytes) -> AsyncIterator[StreamMessage]:
    for start in range(0, len(data), 1 << 20):
        yield Chunk(data[start:start + (1 << 20)])
    yield Finish()


async def _announced(_: object) -> None:
    return None


async def stage(services: Services, caller: Caller, sample: Sample, dataset: str = "twice",
                auto_commit: bool = False) -> Upload:
    """An upload written and completed in-process: STAGED, its validation queued (nobody serves the queue)."""
    upload, _ = await services.uploads.create(caller, "", NewUpload(dataset, sample.path, len(sample.data),
                                                                     sample.sha256, auto_commit=auto_commit))
    await services.upload_stream.write(caller, upload.name, 0, _messages(sample.data), _announced)
    staged = await services.uploads.load(caller, upload.name)
    assert staged.state == UploadState.STAGED
    return staged


class Stalling:
    """The real store, except that `method` stops once called (after doing its work, with `after`) until
    `resume` is set, or for good: the point where the test kills the job, or lets another overtake it."""

    def __init__(self, inner: ObjectStore, method: str, after: bool = False) -> None:
        self._inner = inner
        self._method = method
        self._after = after
        self.reached = asyncio.Event()
        self.resume = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._inner, name)
        if name != self._method:
            return real

        async def stalled(*args: Any, **kwargs: Any) -> Any:
            result = await real(*args, **kwargs) if self._after else None
            self.reached.set()
            await self.resume.wait()
            return result if self._after else await real(*args, **kwargs)

        return stalled


async def killed_at(services: Services, job: Any, method: str, *, after: bool = False) -> None:
    """Run `job` on `services` until the store's `method` is called, then kill it there."""
    real = services.pipeline.store
    stalling = Stalling(real, method, after)
    services.pipeline.store = stalling  # type: ignore[assignment]
    try:
        task = asyncio.ensure_future(job)
        await asyncio.wait_for(asyncio.wait([task, asyncio.ensure_future(stalling.reached.wait())],
                                            return_when=asyncio.FIRST_COMPLETED), 60)
        assert stalling.reached.is_set(), task.result()  # the job ended (or failed) before the point
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        services.pipeline.store = real


async def snapshot(services: Services, caller: Caller) -> dict[str, object]:
    """Every row the pipeline writes for the caller's namespace, and every object under its prefixes."""
    async with services.db.connection() as connection:
        rows = {
            "uploads": """SELECT u.id, u.state, u.version_id, u.size_bytes, u.sha256, u.failure, u.format, u.row_count,
                                 u.purge_time IS NOT NULL AS purged
                          FROM uploads u WHERE u.namespace_id = $1 ORDER BY u.id""",
            "parts": """SELECT p.upload_id, p.number, p.offset_bytes, p.size_bytes, p.etag, p.crc32c FROM upload_parts p
                        JOIN uploads u ON u.id = p.upload_id WHERE u.namespace_id = $1 ORDER BY 1, 2""",
            "versions": """SELECT v.id, v.state, v.number, v.parent_id, v.failure, v.file_count, v.total_bytes,
                                  v.total_rows, v.ready_time
                           FROM versions v JOIN datasets d ON d.id = v.dataset_id WHERE d.namespace_id = $1
                           ORDER BY v.id""",
            "files": """SELECT f.version_id, f.path, f.object_key, f.upload_id, f.size_bytes, f.sha256, f.format,
                               f.row_count FROM version_files f JOIN versions v ON v.id = f.version_id
                        JOIN datasets d ON d.id = v.dataset_id WHERE d.namespace_id = $1 ORDER BY 1, 2""",
            "objects": """SELECT o.key, o.sha256, o.size_bytes, o.create_time FROM fresh_objects o
                          WHERE o.namespace_id = $1 ORDER BY o.key""",
            "datasets": """SELECT d.id, d.state, d.current_version_id, d.revision FROM datasets d
                           WHERE d.namespace_id = $1 ORDER BY d.id""",
        }
        namespace_id = await connection.fetchval("SELECT id FROM namespaces WHERE name = $1", caller.namespace)
        found: dict[str, object] = {name: [tuple(r) for r in await connection.fetch(query, namespace_id)]
                                    for name, query in rows.items()}
    store = services.uploads.store
    for prefix in ("staging", "fresh"):
        found[f"{prefix} objects"] = sorted([(o.key, o.size) async for o in
                                             store.list_objects(f"{prefix}/{caller.namespace}/")])
    found["multipart"] = [m.key async for m in store.list_multipart(f"staging/{caller.namespace}/")]
    return found


async def both(first: Any, second: Any) -> None:
    """Two copies of a job at once; each must end without an error."""
    await asyncio.gather(first, second)


async def everything_again(workers: Workers, uploads: list[Upload], version_id: uuid.UUID) -> None:
    """Every job once more, two copies of each at once (as a sweep and a second worker would run them), then
    two sweeps."""
    first, second = workers
    for upload in uploads:
        await both(first.pipeline.validate_upload(upload.id), second.pipeline.validate_upload(upload.id))
    await both(first.pipeline.promote_version(version_id), second.pipeline.promote_version(version_id))
    await both(first.sweeper.sweep(), second.sweeper.sweep())


async def assert_ready_once(services: Services, caller: Caller, samples: list[Sample],
                            version_id: uuid.UUID) -> dict[str, object]:
    """One READY version (number 1) holding the samples, each stored once in fresh, nothing in staging."""
    found = await snapshot(services, caller)
    versions = found["versions"]
    assert [(v[0], v[1], v[2]) for v in versions] == [(version_id, "READY", 1)], versions  # type: ignore[attr-defined]
    by_path = {f[1]: f for f in found["files"]}  # type: ignore[attr-defined]
    assert sorted(by_path) == sorted(s.path for s in samples)
    for sample in samples:
        _, path, key, _, size, sha256, _, rows = by_path[sample.path]
        assert (size, sha256, rows) == (len(sample.data), sample.sha256, sample.rows), path
        assert key.endswith(f"/objects/{sample.sha256}")
    assert [(o[0], o[1], o[2]) for o in found["objects"]] == sorted(  # type: ignore[attr-defined]
        (by_path[s.path][2], s.sha256, len(s.data)) for s in samples)
    assert found["fresh objects"] == sorted((by_path[s.path][2], len(s.data)) for s in samples)
    assert found["staging objects"] == [] and found["multipart"] == []
    assert {(u[1], u[2]) for u in found["uploads"]} == {("PROMOTED", version_id)}  # type: ignore[attr-defined]
    assert [(d[1], d[2]) for d in found["datasets"]] == [("ACTIVE", version_id)]  # type: ignore[attr-defined]
    return found


async def commit(services: Services, caller: Caller, uploads: list[Upload]) -> uuid.UUID:
    version = await services.versions.commit(caller, f"namespaces/{caller.namespace}/datasets/twice", "",
                                             [u.name for u in uploads], [], "twice", "")
    return version.id


async def test_from_staged(workers: Workers, caller: Caller) -> None:
    first, second = workers
    upload = await stage(first, caller, SAMPLES[0], auto_commit=True)
    await both(first.pipeline.validate_upload(upload.id), second.pipeline.validate_upload(upload.id))
    validated = await first.uploads.load(caller, upload.name)
    assert validated.state == UploadState.VALIDATED and validated.version_id is not None  # auto-committed once
    await both(first.pipeline.promote_version(validated.version_id), second.pipeline.promote_version(
        validated.version_id))
    before = await assert_ready_once(first, caller, SAMPLES[:1], validated.version_id)
    await everything_again(workers, [upload], validated.version_id)
    assert await snapshot(first, caller) == before


async def test_from_validating(workers: Workers, caller: Caller) -> None:
    first, second = workers
    uploads = [await stage(first, caller, sample) for sample in SAMPLES]
    version_id = await commit(first, caller, uploads)
    # The first worker dies while validating the CSV: its row stays VALIDATING.
    await killed_at(first, first.pipeline.validate_upload(uploads[0].id), "exists")
    assert (await first.uploads.load(caller, uploads[0].name)).state == UploadState.VALIDATING
    for upload in uploads:
        await both(first.pipeline.validate_upload(upload.id), second.pipeline.validate_upload(upload.id))
    assert {(await first.uploads.load(caller, u.name)).state for u in uploads} == {UploadState.VALIDATED}
    await both(first.pipeline.promote_version(version_id), second.pipeline.promote_version(version_id))
    before = await assert_ready_once(first, caller, SAMPLES, version_id)
    await everything_again(workers, uploads, version_id)
    assert await snapshot(first, caller) == before


async def test_from_promoting(workers: Workers, caller: Caller) -> None:
    first, second = workers
    uploads = [await stage(first, caller, sample) for sample in SAMPLES]
    for upload in uploads:
        await first.pipeline.validate_upload(upload.id)
    version_id = await commit(first, caller, uploads)
    # The first worker dies just after copying the first file into fresh storage.
    await killed_at(first, first.pipeline.promote_version(version_id), "copy", after=True)
    midway = await snapshot(first, caller)
    assert [v[1] for v in midway["versions"]] == ["PROMOTING"]  # type: ignore[attr-defined]
    assert len(midway["fresh objects"]) == 1 and len(midway["staging objects"]) == 3  # type: ignore[arg-type]
    await both(first.pipeline.promote_version(version_id), second.pipeline.promote_version(version_id))
    before = await assert_ready_once(first, caller, SAMPLES, version_id)
    await everything_again(workers, uploads, version_id)
    assert await snapshot(first, caller) == before


async def test_a_promotion_overtaken_by_another_ends_quietly(workers: Workers, caller: Caller) -> None:
    # The slow worker sees no fresh copy and is about to copy from staging; meanwhile the other promotes the
    # whole version and removes the staged bytes. The slow one's copy then finds no source: not an error, since
    # the content it wanted is in fresh storage.
    slow, fast = workers
    upload = await stage(slow, caller, SAMPLES[0])
    await slow.pipeline.validate_upload(upload.id)
    version_id = await commit(slow, caller, [upload])
    real = slow.pipeline.store
    stalling = Stalling(real, "copy")
    slow.pipeline.store = stalling  # type: ignore[assignment]
    try:
        overtaken = asyncio.ensure_future(slow.pipeline.promote_version(version_id))
        await asyncio.wait_for(stalling.reached.wait(), 60)
        await fast.pipeline.promote_version(version_id)
        assert not await real.exists(upload.staging_key)
        stalling.resume.set()
        await asyncio.wait_for(overtaken, 60)
    finally:
        slow.pipeline.store = real
    await assert_ready_once(slow, caller, SAMPLES[:1], version_id)


# --- a job that finds the world changed ---------------------------------------------------------------------


async def test_staged_bytes_gone_before_validation(workers: Workers, caller: Caller) -> None:
    services = workers[0]
    upload = await stage(services, caller, SAMPLES[0])
    await services.uploads.store.delete(upload.staging_key)
    with pytest.raises(DataLoss) as raised:
        await services.pipeline.validate_upload(upload.id)
    assert raised.value.reason == "STAGED_OBJECT_MISSING"
    await services.pipeline.validation_gave_up(upload.id, raised.value)  # what the worker does at the last try
    failed = await services.uploads.load(caller, upload.name)
    assert failed.state == UploadState.FAILED and failed.failure is not None
    assert (failed.failure.reason, failed.failure.retryable) == ("STAGED_OBJECT_MISSING", False)


async def test_staged_bytes_gone_before_promotion(workers: Workers, caller: Caller) -> None:
    services = workers[0]
    upload = await stage(services, caller, SAMPLES[0])
    await services.pipeline.validate_upload(upload.id)
    version_id = await commit(services, caller, [upload])
    await services.uploads.store.delete(upload.staging_key)
    with pytest.raises(DataLoss) as raised:
        await services.pipeline.promote_version(version_id)
    assert raised.value.reason == "STAGED_OBJECT_MISSING"
    await services.pipeline.promotion_gave_up(version_id, raised.value)
    found = await snapshot(services, caller)
    assert [(v[1], v[4]["reason"]) for v in found["versions"]] == [  # type: ignore[attr-defined]
        ("FAILED", "STAGED_OBJECT_MISSING")]
    assert found["files"] == [] and found["fresh objects"] == []


async def test_a_dataset_deleted_under_an_auto_commit(workers: Workers, caller: Caller) -> None:
    services = workers[0]
    upload = await stage(services, caller, SAMPLES[0], dataset="gone", auto_commit=True)
    await services.datasets.delete(caller, f"namespaces/{caller.namespace}/datasets/gone", "")
    await services.pipeline.validate_upload(upload.id)
    failed = await services.uploads.load(caller, upload.name)
    assert failed.state == UploadState.FAILED and failed.failure is not None
    assert failed.failure.reason == "DATASET_DELETED" and failed.version_id is None
    found = await snapshot(services, caller)
    assert found["versions"] == [] and found["staging objects"] == [] and found["multipart"] == []


async def test_a_dataset_deleted_under_a_promotion(workers: Workers, caller: Caller) -> None:
    services = workers[0]
    upload = await stage(services, caller, SAMPLES[1], dataset="twice")
    version_id = await commit(services, caller, [upload])
    await services.pipeline.validate_upload(upload.id)
    await services.datasets.delete(caller, f"namespaces/{caller.namespace}/datasets/twice", "")
    await services.pipeline.promote_version(version_id)
    found = await snapshot(services, caller)
    assert [(v[1], v[2], v[4]["reason"]) for v in found["versions"]] == [  # type: ignore[attr-defined]
        ("FAILED", None, "DATASET_DELETED")]
    assert found["files"] == []
