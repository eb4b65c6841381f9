"""A worker outlives Redis: killed under it, Redis comes back empty, and the worker finds the work again.

A server and a worker share a Redis of their own, which is killed (-9) and started again with no data: the
worker's /health turns 503 NOT_SERVING naming Redis, the process stays up, an upload staged meanwhile (its
enqueue failed) is queued again by the server's retry or the worker's requeue cron, and it becomes a READY
version with nobody restarting anything.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from quarry.v1 import upload_pb2
from quarry.v1 import upload_service_pb2 as pb

from server.embedded import EmbeddedPostgres, EmbeddedRedis
from server.listen_ports import free_port
from tests.conftest import create_database
from tests.samples import csv_sample
from tests.support import QuarryProcess, open_api, start_server
from tests.uploading import create_request, resume_messages, stream_of

pytestmark = pytest.mark.slow


def worker_health(port: int) -> tuple[int, str]:
    """(HTTP status, body) of a worker's /health."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:  # not listening yet
        return 0, str(error)


async def wait_health(port: int, status: int, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        code, body = await asyncio.to_thread(worker_health, port)
        if code == status:
            return body
        assert time.monotonic() < deadline, f"worker /health stayed {code}: {body}"
        await asyncio.sleep(0.1)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    redis = EmbeddedRedis(tmp_path / "redis", persistent=False, die_with_parent=False)  # restarted mid-test
    redis.start()
    yield redis
    redis.stop()


async def test_a_worker_outlives_redis_and_finds_the_work_again(
        stack_envs: dict[str, dict[str, str]], postgres: EmbeddedPostgres, own_redis: EmbeddedRedis,
        tmp_path: Path) -> None:
    env = dict(stack_envs["file"], QUARRY_DATABASE_URL=await create_database(postgres, "worker_outage"),
               QUARRY_REDIS_URL=own_redis.url, QUARRY_STORAGE_URL=f"file://{tmp_path / 'objects'}",
               QUARRY_HEALTH_INTERVAL_SECONDS="0.3", QUARRY_HEALTH_FAILURES="2", QUARRY_STUCK_AFTER_SECONDS="2")
    server = await asyncio.to_thread(start_server, env, tmp_path, "server", "file")
    port = free_port()
    worker = QuarryProcess("workers", dict(env, QUARRY_WORKER_METRICS_PORT=str(port)), tmp_path / "worker.log").start()
    api = open_api(server.address)
    try:
        assert (await wait_health(port, 200)).strip() == "SERVING"
        deadline = time.monotonic() + 30
        while "redis_version=" not in worker.log():  # arq logs it once its loop has started
            assert time.monotonic() < deadline, worker.log()[-2000:]
            await asyncio.sleep(0.1)
        assert own_redis.process is not None
        own_redis.process.kill()  # kill -9: whatever was queued is gone with it
        own_redis.process.wait()
        down_at = time.monotonic()
        body = await wait_health(port, 503)
        assert body.startswith("NOT_SERVING") and "redis" in body
        # Meanwhile an upload is staged: its validation cannot be queued now.
        sample = csv_sample(200)
        created = (await api.uploads.CreateUpload(create_request("outage", sample.path, len(sample.data),
                                                                 sample.sha256, auto_commit=True))).upload
        staged = await api.uploads.Upload(stream_of(resume_messages(created.name, 0, sample.data)))
        assert staged.upload.state == upload_pb2.UPLOAD_STATE_STAGED
        await asyncio.sleep(1)
        assert worker.process is not None and worker.process.poll() is None  # the worker is still there
        await asyncio.to_thread(own_redis.start)
        await wait_health(port, 200)
        for _ in range(600):
            upload = (await api.uploads.GetUpload(pb.GetUploadRequest(name=created.name))).upload
            if upload.state == upload_pb2.UPLOAD_STATE_PROMOTED:
                break
            await asyncio.sleep(0.1)
        assert upload.state == upload_pb2.UPLOAD_STATE_PROMOTED, upload
        print(f"redis down to upload PROMOTED: {time.monotonic() - down_at:.1f} s")
        assert worker.process.poll() is None
        assert worker.log().count("redis is not answering; the worker keeps trying") == 1
        assert "could not enqueue validate_upload" in server.process.log()
    finally:
        await api.channel.close()
        stopped = await asyncio.to_thread(worker.stop)
        await asyncio.to_thread(server.process.stop)
    assert stopped == 0, worker.log()[-3000:]  # SIGTERM is a normal stop


async def test_a_redis_failure_while_starting_a_job_gives_its_slot_back(own_redis: EmbeddedRedis) -> None:
    # arq takes a job slot (semaphore and counter) before asking Redis about the job; when Redis fails right
    # there, it never gives the slot back, and after a few outages the worker would start no job ever again.
    from arq import create_pool

    from server.storage.jobqueue import redis_settings
    from workers.runtime import REDIS_DOWN, build_worker
    from workers.worker import JOBS

    async def nothing(_: object) -> None:
        return None

    worker = build_worker(own_redis.url, JOBS, [], on_startup=nothing, max_jobs=2, job_timeout=60, max_tries=3,
                          burst=True)
    worker._pool = await create_pool(redis_settings(own_redis.url))
    try:
        assert own_redis.process is not None
        own_redis.process.kill()
        own_redis.process.wait()
        for _ in range(5):
            with pytest.raises(REDIS_DOWN):
                await worker.start_jobs([b"validate_upload:x"])
        assert worker.job_counter == 0
        assert worker.sem._value == 3  # max_jobs + 1, as arq made it: every slot is free again
    finally:
        await worker._pool.aclose()


async def test_an_outage_of_the_workers_own_dependencies_uses_no_tries() -> None:
    # A job whose database is down retries past its tries, and a give-up that cannot be recorded (the database
    # is down) runs the job again later rather than dropping it; any other transient failure gives up in time.
    from arq import Retry

    from server.model.errors import Unavailable
    from workers.runtime import JobSpec, _wrap

    recorded: list[str] = []
    database_down = Unavailable("database unavailable: ConnectionRefusedError", reason="DATABASE_UNAVAILABLE")
    store_down = Unavailable("object store unreachable", reason="STORE_UNAVAILABLE")

    def job_failing_with(error: Exception, give_up_error: Exception | None = None) -> object:
        async def run(ctx: dict[str, object], *args: object) -> None:
            raise error

        async def give_up(ctx: dict[str, object], args: tuple[object, ...], exc: BaseException) -> None:
            if give_up_error is not None:
                raise give_up_error
            recorded.append(type(exc).__name__ + ":" + getattr(exc, "reason", ""))

        return _wrap(JobSpec("validate_upload", run, give_up), max_tries=3)

    last_try = {"job_try": 3, "job_id": "validate_upload:x"}
    with pytest.raises(Retry):  # its database is down: no try is used up, however many it had
        await job_failing_with(database_down)(dict(last_try), "x")  # type: ignore[operator]
    with pytest.raises(Unavailable):  # the store is down on its last try: it gives up, and says why
        await job_failing_with(store_down)(dict(last_try), "x")  # type: ignore[operator]
    assert recorded == ["Unavailable:STORE_UNAVAILABLE"]
    with pytest.raises(Retry):  # ... unless saying so fails because the database is down: then it runs again
        await job_failing_with(store_down, database_down)(dict(last_try), "x")  # type: ignore[operator]


async def test_a_failed_enqueue_is_tried_again_in_the_background(own_redis: EmbeddedRedis) -> None:
    from server.storage.jobqueue import JobQueue

    queue = await JobQueue.connect(own_redis.url, 5)
    try:
        assert own_redis.process is not None
        own_redis.process.kill()
        own_redis.process.wait()
        assert await queue.enqueue_for("validate_upload", "u-1", "upload_id") is False  # logged, not raised
        assert await queue.enqueue_for("validate_upload", "u-1", "upload_id") is False
        assert queue.pending_retries == 1  # one retry per job, however often it was asked for
        await asyncio.sleep(1)
        await asyncio.to_thread(own_redis.start)  # empty: only the retry can put the job there
        deadline = time.monotonic() + 15
        while "validate_upload:u-1" not in await _queued(queue):
            assert time.monotonic() < deadline, "the enqueue was never tried again"
            await asyncio.sleep(0.1)
        assert queue.pending_retries == 0
    finally:
        await queue.close()


async def _queued(queue: object) -> list[str]:
    try:
        return await queue.queued_job_ids()  # type: ignore[attr-defined, no-any-return]
    except Exception:  # Redis still starting
        return []
