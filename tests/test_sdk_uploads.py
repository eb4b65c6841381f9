"""The SDK's uploads against the real server: one and several streams, resume, progress, the upload RPCs."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest
import quarry
from quarry.v1 import upload_pb2
from quarry.v1 import upload_service_pb2 as pb

from tests.conftest import Env
from tests.sdk_support import BreakingProxy, provision, write_random_file
from tests.support import ServerHandle, refused_port

MiB = 1 << 20
PART = 16 * MiB


def client_for(env: Env, tmp_path: Path, address: str | None = None, **options: object) -> quarry.Client:
    return quarry.Client(address or env.server.address, namespace=env.namespace, token=env.api.token,
                         cache_dir=tmp_path / "cache", **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [0, 1000, PART, 3 * PART + 123])
async def test_upload_file_sizes_stage_identical_bytes(env: Env, tmp_path: Path, size: int) -> None:
    source = tmp_path / "data.bin"
    sha = write_random_file(source, size)
    seen: list[tuple[int, int]] = []
    with client_for(env, tmp_path) as client:
        result = client.upload_file(source, "sizes", f"f{size}.bin", progress=lambda d, t: seen.append((d, t)))
    upload = result.upload
    assert upload.state == upload_pb2.UPLOAD_STATE_STAGED and upload.size_bytes == size
    # The sha256 was hashed while the file was sent, and given at the finish (nothing declared beforehand).
    assert upload.sha256 == sha == result.sha256 and not upload.declared_sha256 and upload.declared_size_bytes == size
    assert result.bytes_sent == size and result.bytes_skipped == 0 and not result.resumed
    # One stream on a local store (more gain nothing there), 4 on S3 for a file of several parts.
    assert result.streams == (1 if size <= PART or env.server.storage_kind == "file" else 4)
    assert await env.staged_sha256(upload.uid) == sha
    if size:
        assert seen[-1] == (size, size) and all(t == size for _, t in seen)
    assert not list((tmp_path / "cache" / "uploads").glob("*.json"))  # resume state is dropped when done


async def test_parallel_streams_on_s3_too(server_s3: ServerHandle, stores: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    source = tmp_path / "p.bin"
    sha = write_random_file(source, 5 * PART + 7)
    namespace, token = provision(server_s3.address)
    with quarry.Client(server_s3.address, namespace=namespace, token=token, cache_dir=tmp_path, streams=3) as client:
        result = client.upload_file(source, "par")
    assert result.upload.state == upload_pb2.UPLOAD_STATE_STAGED and result.streams == 3
    assert len(result.upload.parts) == 6
    digest = hashlib.sha256()
    async for chunk in stores["s3"].read(f"staging/{namespace}/{result.upload.uid}"):
        digest.update(chunk)
    assert digest.hexdigest() == sha
    await stores["s3"].delete(f"staging/{namespace}/{result.upload.uid}")


async def test_broken_connection_resumes_within_the_call(env: Env, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    sha = write_random_file(source, 4 * PART + 99)
    proxy = BreakingProxy(env.server.address, budget=PART + 5 * MiB, breaks=2)
    try:
        with client_for(env, tmp_path, proxy.address, streams=1) as client:
            result = client.upload_file(source, "broken", "b.bin")
    finally:
        proxy.close()
    assert proxy.cuts == 2
    assert result.upload.state == upload_pb2.UPLOAD_STATE_STAGED
    assert await env.staged_sha256(result.upload.uid) == sha
    # What a broken stream had not committed went again: at most the part in flight plus what gRPC had
    # buffered, per break. (The exact count is checked in the CLI's restart test, with no break in the run.)
    size = source.stat().st_size
    assert size < result.bytes_sent <= size + proxy.cuts * (PART + 16 * MiB)
    assert result.streams >= 3


async def test_restarted_call_resumes_from_saved_state(env: Env, tmp_path: Path) -> None:
    source = tmp_path / "r.bin"
    size = 3 * PART + 5
    sha = write_random_file(source, size)
    # A first process created the upload and committed part 2 only, then died.
    with client_for(env, tmp_path) as client:
        job_store = quarry._resume.ResumeStore(tmp_path / "cache")  # type: ignore[attr-defined]
        first = client.create_upload("restart", "r.bin", size=size, sha256=sha)
        data = source.read_bytes()
        chunks = [pb.UploadRequest(chunk=pb.UploadChunk(data=data[start:start + 4 * MiB]))
                  for start in range(PART, 2 * PART, 4 * MiB)]
        client.upload_stream(iter([pb.UploadRequest(header=pb.UploadHeader(upload=first.name, write_offset=PART)),
                                   *chunks]))
        identity = quarry._resume.FileIdentity.of(source)  # type: ignore[attr-defined]
        key = job_store.key(identity, env.namespace, "restart", "r.bin")
        job_store.save(key, quarry._resume.ResumeState(upload=first.name))  # type: ignore[attr-defined]
        result = client.upload_file(source, "restart", "r.bin")
    assert result.resumed and result.upload.name == first.name
    assert result.bytes_skipped == PART and result.bytes_sent == size - PART
    assert await env.staged_sha256(result.upload.uid) == sha


async def test_a_file_rewritten_in_place_is_not_resumed(env: Env, tmp_path: Path) -> None:
    """Resume identity is path, size and time, then the CRC32C of every part the server committed: a file
    rewritten with its size and time kept is caught there (no hash of the whole file before sending)."""
    source = tmp_path / "w.bin"
    size = 2 * PART + 3
    write_random_file(source, size)
    with client_for(env, tmp_path) as client:
        first = client.create_upload("rewritten", "w.bin", size=size)
        data = source.read_bytes()
        client.upload_stream(iter([pb.UploadRequest(header=pb.UploadHeader(upload=first.name, write_offset=0)),
                                   *(pb.UploadRequest(chunk=pb.UploadChunk(data=data[start:start + 4 * MiB]))
                                     for start in range(0, PART, 4 * MiB))]))
        assert len(client.get_upload(first.name).parts) == 1  # part 1 committed
        stat = source.stat()
        sha = write_random_file(source, size)  # other bytes, same size, and the same time put back
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        job_store = quarry._resume.ResumeStore(tmp_path / "cache")  # type: ignore[attr-defined]
        key = job_store.key(quarry._resume.FileIdentity.of(source), env.namespace, "rewritten", "w.bin")  # type: ignore[attr-defined]
        job_store.save(key, quarry._resume.ResumeState(upload=first.name))  # type: ignore[attr-defined]
        result = client.upload_file(source, "rewritten", "w.bin")
    assert not result.resumed and result.upload.name != first.name and result.bytes_sent == size
    assert await env.staged_sha256(result.upload.uid) == sha == result.sha256


async def test_changed_file_is_a_new_upload(env: Env, tmp_path: Path) -> None:
    source = tmp_path / "c.bin"
    source.write_bytes(b"a" * 100)
    with client_for(env, tmp_path) as client:
        first = client.upload_file(source, "changed")
        source.write_bytes(b"b" * 101)
        second = client.upload_file(source, "changed")
    assert first.upload.name != second.upload.name and second.upload.size_bytes == 101


async def test_async_client_uploads_in_parallel_and_resumes(env: Env, tmp_path: Path) -> None:
    source = tmp_path / "a.bin"
    sha = write_random_file(source, 4 * PART + 1)
    proxy = BreakingProxy(env.server.address, budget=PART + 3 * MiB, breaks=1)
    try:
        async with quarry.AsyncClient(proxy.address, namespace=env.namespace, token=env.api.token,
                                      cache_dir=tmp_path) as client:
            seen: list[int] = []
            result = await client.upload_file(source, "async", progress=lambda d, t: seen.append(d))
            again = await client.get_upload(result.upload.uid)
    finally:
        proxy.close()
    assert proxy.cuts == 1
    assert result.upload.state == upload_pb2.UPLOAD_STATE_STAGED and again.state != upload_pb2.UPLOAD_STATE_OPEN
    assert await env.staged_sha256(result.upload.uid) == sha
    size = source.stat().st_size
    assert seen[-1] == size
    # The break cost every stream at most the part in flight plus what gRPC had buffered.
    assert result.streams > 1
    assert size < result.bytes_sent <= size + proxy.cuts * result.streams * (PART + 16 * MiB)


async def test_upload_rpcs_through_the_client(env: Env, tmp_path: Path) -> None:
    data = os.urandom(1000)
    with client_for(env, tmp_path) as client:
        caps = client.get_capabilities()
        assert caps.max_chunk_bytes > 0 and caps.storage_kind == env.server.storage_kind
        opened = client.create_upload("rpcs", "x.bin", size=len(data))
        assert opened.state == upload_pb2.UPLOAD_STATE_OPEN
        assert client.get_upload(opened.uid).name == opened.name  # a uid or a full name
        response = client.upload_stream(iter([
            pb.UploadRequest(header=pb.UploadHeader(upload=opened.name)),
            pb.UploadRequest(chunk=pb.UploadChunk(data=data)),
            pb.UploadRequest(finish=pb.UploadFinish(sha256=hashlib.sha256(data).hexdigest()))]))
        assert response.upload.state == upload_pb2.UPLOAD_STATE_STAGED
        assert client.complete_upload(opened.name).state != upload_pb2.UPLOAD_STATE_OPEN  # harmless again
        other = client.create_upload("rpcs", "y.bin")
        assert [u.path for u in client.list_uploads(state="open")] == ["y.bin"]
        assert {u.path for u in client.list_uploads(dataset="rpcs", page_size=1)} == {"x.bin", "y.bin"}
        assert client.cancel_upload(other.uid).state == upload_pb2.UPLOAD_STATE_CANCELLED
        assert client.cancel_upload(other.uid).state == upload_pb2.UPLOAD_STATE_CANCELLED  # twice is fine
        with pytest.raises(quarry.WrongState) as wrong:
            client.upload_stream(iter([pb.UploadRequest(header=pb.UploadHeader(upload=other.name))]))
        assert wrong.value.reason == "UPLOAD_CANCELLED"
        with pytest.raises(quarry.NotFound):
            client.get_upload(f"namespaces/{env.namespace}/uploads/00000000-0000-0000-0000-000000000000")
        with pytest.raises(quarry.InvalidArgument) as bad:
            list(client.list_uploads(filter="colour = blue"))
        assert bad.value.reason


async def test_watch_follows_an_upload_to_its_end(env: Env, tmp_path: Path) -> None:
    with client_for(env, tmp_path) as client:
        opened = client.create_upload("watch", "w.bin", size=10)
        states = []
        for upload in client.watch_upload(opened.uid, timeout=30):
            states.append(upload.state)
            if len(states) == 1:
                client.cancel_upload(opened.uid)
    assert states == [upload_pb2.UPLOAD_STATE_OPEN, upload_pb2.UPLOAD_STATE_CANCELLED]


async def test_wait_gives_up_at_its_timeout(pipeline_env: Env, tmp_path: Path) -> None:
    env = pipeline_env
    source = tmp_path / "w.csv"
    source.write_text("a,b\n1,2\n")
    timeout = 0.5
    with client_for(env, tmp_path) as client:
        client.create_dataset("waiting")
        # The worker commits a version under the dataset row's lock: while the test holds that row, the upload
        # validates but cannot be PROMOTED, so the wait must end at its timeout. (NO KEY UPDATE leaves the
        # upload's own inserts, which only share the key, free to go.)
        async with env.pool.acquire() as connection, connection.transaction():
            await connection.execute(
                """SELECT 1 FROM datasets d JOIN namespaces n ON n.id = d.namespace_id
                   WHERE n.name = $1 AND d.name = 'waiting' FOR NO KEY UPDATE OF d""", env.namespace)
            started = time.monotonic()
            with pytest.raises(quarry.DeadlineExceeded):
                client.upload_file(source, "waiting", wait=True, wait_timeout=timeout)
            elapsed = time.monotonic() - started
            [upload] = client.list_uploads(dataset="waiting")
            assert upload.state != upload_pb2.UPLOAD_STATE_PROMOTED
        assert timeout <= elapsed < timeout + 3
        # Once the row is free the worker carries on, and waiting again (the same upload, resumed) sees it end.
        again = client.upload_file(source, "waiting", wait=True, wait_timeout=60)
    assert again.resumed and again.upload.name == upload.name
    assert again.upload.state == upload_pb2.UPLOAD_STATE_PROMOTED


async def test_retry_upload_is_not_retried_blindly(env: Env, tmp_path: Path) -> None:
    with client_for(env, tmp_path) as client:
        opened = client.create_upload("retry", "r.bin", size=10)
        with pytest.raises(quarry.WrongState) as wrong:
            client.retry_upload(opened.uid)
        assert wrong.value.reason == "UPLOAD_NOT_FAILED"


async def test_server_down_is_a_connect_error(tmp_path: Path) -> None:
    retry = quarry.RetryPolicy(max_attempts=2, initial_backoff=0.01)
    with quarry.Client(f"127.0.0.1:{refused_port()}", namespace="x", cache_dir=tmp_path, retry=retry, timeout=5) as c:
        with pytest.raises(quarry.ConnectError) as raised:
            c.get_capabilities()
    assert raised.value.code.name == "UNAVAILABLE"
