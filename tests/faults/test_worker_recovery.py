"""Workers survive their own death and transient faults: kill -9, retries. (Jobs run twice, from every
middle state: tests/test_jobs_twice.py.)"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import grpc
import pytest
from grpc import aio
from quarry.v1 import dataset_service_pb2 as dpb
from quarry.v1 import upload_pb2, version_pb2
from quarry.v1 import upload_service_pb2 as pb

from server.embedded import EmbeddedPostgres, EmbeddedRedis
from server.listen_ports import free_port
from tests.conftest import own_stack
from tests.samples import binary_sample, csv_sample
from tests.sdk_support import Cli
from tests.support import QuarryProcess, error_info, eventually, open_api, start_server
from tests.test_pipeline import upload_and_watch, wait_version
from tests.uploading import create_request, resume_messages, stream_of

pytestmark = pytest.mark.slow


async def _wait_upload_state(api: object, name: str, wanted: int, timeout: float = 60) -> None:
    for _ in range(int(timeout * 20)):
        upload = (await api.uploads.GetUpload(pb.GetUploadRequest(name=name))).upload  # type: ignore[attr-defined]
        if upload.state == wanted:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} never reached {wanted}")


@pytest.mark.parametrize("kind, db_number", [("file", 5), ("s3", 6)])
async def test_kill_9_mid_validation_then_a_new_worker_finishes(
        kind: str, db_number: int, stack_envs: dict[str, dict[str, str]], postgres: EmbeddedPostgres,
        redis_server: EmbeddedRedis, tmp_path: Path) -> None:
    env = await own_stack(stack_envs, kind, postgres, redis_server, f"kill_validation_{kind}", db_number)
    server = start_server(env, tmp_path, "server", kind)
    api = open_api(server.address)
    worker = QuarryProcess("workers", env, tmp_path / "worker1.log").start()
    try:
        sample = csv_sample(1_500_000 if kind == "file" else 400_000, path="big.csv")
        created = (await api.uploads.CreateUpload(create_request("crash", sample.path, len(sample.data),
                                                                 sample.sha256, auto_commit=True))).upload
        await api.uploads.Upload(stream_of(resume_messages(created.name, 0, sample.data, chunk=4 << 20)))
        await _wait_upload_state(api, created.name, upload_pb2.UPLOAD_STATE_VALIDATING)
        worker.stop(signal.SIGKILL)
        assert (await api.uploads.GetUpload(pb.GetUploadRequest(name=created.name))).upload.state == \
            upload_pb2.UPLOAD_STATE_VALIDATING
        worker = QuarryProcess("workers", env, tmp_path / "worker2.log").start()
        await _wait_upload_state(api, created.name, upload_pb2.UPLOAD_STATE_PROMOTED, timeout=90)
        upload = (await api.uploads.GetUpload(pb.GetUploadRequest(name=created.name))).upload
        version = (await api.datasets.GetVersion(dpb.GetVersionRequest(name=upload.version,
                                                                         view=dpb.VERSION_VIEW_FULL))).version
        assert version.number == 1 and version.files[0].row_count == sample.rows
        assert version.files[0].sha256 == sample.sha256
        pool = await asyncpg.create_pool(env["QUARRY_DATABASE_URL"], min_size=1, max_size=2)
        counts = await pool.fetchrow("""SELECT (SELECT count(*) FROM versions) AS versions,
                                               (SELECT count(*) FROM version_files) AS files,
                                               (SELECT count(*) FROM fresh_objects) AS objects""")
        await pool.close()
        assert dict(counts) == {"versions": 1, "files": 1, "objects": 1}
    finally:
        worker.stop()
        await api.channel.close()
        server.process.stop()


async def test_kill_9_mid_promotion_then_a_new_worker_finishes(
        stack_envs: dict[str, dict[str, str]], postgres: EmbeddedPostgres, redis_server: EmbeddedRedis,
        tmp_path: Path) -> None:
    env = await own_stack(stack_envs, "s3", postgres, redis_server, "kill_promotion", 7)
    server = start_server(env, tmp_path, "server", "s3")
    api = open_api(server.address)
    worker = QuarryProcess("workers", env, tmp_path / "worker1.log").start()
    parent = f"namespaces/{api.namespace}/datasets/many"
    try:
        samples = [binary_sample(3 << 20, path=f"f{i:02}.bin") for i in range(24)]
        uploads = await asyncio.gather(*(upload_and_watch(api, "many", s, auto_commit=False) for s in samples))
        assert all(u.state == upload_pb2.UPLOAD_STATE_VALIDATED for u, _ in uploads)
        version = (await api.datasets.CommitVersion(dpb.CommitVersionRequest(
            parent=parent, uploads=[u.name for u, _ in uploads]))).version
        for _ in range(600):
            state = (await api.datasets.GetVersion(dpb.GetVersionRequest(name=version.name))).version.state
            if state == version_pb2.VERSION_STATE_PROMOTING:
                break
            await asyncio.sleep(0.01)
        assert state == version_pb2.VERSION_STATE_PROMOTING
        worker.stop(signal.SIGKILL)
        worker = QuarryProcess("workers", env, tmp_path / "worker2.log").start()
        done = await wait_version(api, version.name, timeout=90)
        assert done.state == version_pb2.VERSION_STATE_READY and done.number == 1 and done.file_count == 24
        pool = await asyncpg.create_pool(env["QUARRY_DATABASE_URL"], min_size=1, max_size=2)
        counts = await pool.fetchrow("""SELECT (SELECT count(*) FROM versions) AS versions,
                                               (SELECT count(*) FROM version_files) AS files,
                                               (SELECT count(DISTINCT object_key) FROM version_files) AS keys,
                                               (SELECT count(*) FROM fresh_objects) AS objects""")
        await pool.close()
        assert dict(counts) == {"versions": 1, "files": 24, "keys": 24, "objects": 24}
    finally:
        worker.stop()
        await api.channel.close()
        server.process.stop()


class FlakyProxy:
    """A TCP proxy in front of a real server that can be made to refuse connections: a real network fault."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.up = True
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while self.up and (data := await source.read(1 << 16)):
                    sink.write(data)
                    await sink.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                sink.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()


@pytest.fixture
async def flaky_s3(moto_endpoint: str) -> AsyncIterator[FlakyProxy]:
    proxy = FlakyProxy(int(moto_endpoint.rsplit(":", 1)[1]))
    await proxy.start()
    yield proxy
    await proxy.close()


async def test_retry_upload_after_a_transient_failure(stack_envs: dict[str, dict[str, str]], postgres: EmbeddedPostgres,
                                                      redis_server: EmbeddedRedis, tmp_path: Path,
                                                      flaky_s3: FlakyProxy) -> None:
    env = await own_stack(stack_envs, "s3", postgres, redis_server, "retry_transient", 8)
    # The worker reaches the store through the proxy; the server reaches it directly.
    worker_env = dict(env, QUARRY_JOB_MAX_TRIES="1",  # give up at the first transient failure: a quick test
                      QUARRY_STORAGE_URL=env["QUARRY_STORAGE_URL"].replace(f":{flaky_s3.target_port}",
                                                                           f":{flaky_s3.port}"))
    server = await asyncio.to_thread(start_server, env, tmp_path, "server", "s3")
    api = open_api(server.address)
    worker = QuarryProcess("workers", worker_env, tmp_path / "worker.log").start()
    try:
        async def started() -> bool:
            return "Starting worker" in worker.log()

        await eventually(started, "the worker's 'Starting worker' log line", timeout=30, interval=0.1)
        flaky_s3.up = False  # the store goes away for the worker
        sample = csv_sample(100)
        created = (await api.uploads.CreateUpload(create_request("flaky", sample.path, len(sample.data),
                                                                 sample.sha256, auto_commit=True))).upload
        await api.uploads.Upload(stream_of(resume_messages(created.name, 0, sample.data)))
        await _wait_upload_state(api, created.name, upload_pb2.UPLOAD_STATE_FAILED, timeout=90)
        failed = (await api.uploads.GetUpload(pb.GetUploadRequest(name=created.name))).upload
        assert failed.failure.retryable and failed.failure.code == grpc.StatusCode.UNAVAILABLE.value[0]
        listed = await api.uploads.ListUploads(pb.ListUploadsRequest(filter="state = FAILED"))
        assert [u.name for u in listed.uploads] == [created.name]
        flaky_s3.up = True
        # The retry goes through the CLI, as an operator would do it.
        cli = Cli(server.address, api.namespace, tmp_path / "cli-cache")
        failed_rows = await asyncio.to_thread(cli.json, "uploads", "ls", "--state", "failed")
        assert [row["uid"] for row in failed_rows] == [created.uid]
        retried = await asyncio.to_thread(cli.json, "uploads", "retry", created.uid)
        assert retried["state"] == "UPLOAD_STATE_STAGED"
        await _wait_upload_state(api, created.name, upload_pb2.UPLOAD_STATE_PROMOTED, timeout=60)
        # A file that is simply invalid stays FAILED.
        broken = csv_sample(3, path="broken.csv")
        bad = broken.__class__(broken.path, broken.data + b"1,2\n", "CSV", 0, ())
        failed_for_good, _ = await upload_and_watch(api, "flaky", bad)
        assert failed_for_good.failure.reason == "RAGGED_ROW" and not failed_for_good.failure.retryable
        with pytest.raises(aio.AioRpcError) as refused:
            await api.uploads.RetryUpload(pb.RetryUploadRequest(name=failed_for_good.name))
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(refused.value)[0] == "NOT_RETRYABLE"
        with pytest.raises(aio.AioRpcError) as refused:
            await api.uploads.RetryUpload(pb.RetryUploadRequest(name=created.name))
        assert error_info(refused.value)[0] == "UPLOAD_NOT_FAILED"
    finally:
        await asyncio.to_thread(worker.stop)
        await api.channel.close()
        await asyncio.to_thread(server.process.stop)
