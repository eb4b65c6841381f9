"""Uploads through the real server, on both stores: one call, resume, parallel streams, watch, cancel."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import grpc
import pytest
from grpc import aio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from quarry.v1 import upload_pb2
from quarry.v1 import upload_service_pb2 as pb

from bench.aio_calls import finish
from server.model.objects import ObjectStore
from tests.conftest import SMALL_PART_BYTES, STORE_KINDS, Env
from tests.support import (
    Api,
    ServerHandle,
    error_info,
    eventually,
    open_api,
    read_metrics,
    start_server,
    upload_blocking,
)
from tests.uploading import (
    MiB,
    chunk_messages,
    create_request,
    one_call_messages,
    resume_messages,
    stream_of,
    upload_bytes,
)

PART = 16 * MiB  # the part size the server picks for files under 100 MB
# Once staged, a worker (if one runs in this session) may move an upload on at any moment.
AFTER_STAGING = {upload_pb2.UPLOAD_STATE_STAGED, upload_pb2.UPLOAD_STATE_VALIDATING, upload_pb2.UPLOAD_STATE_VALIDATED}


@pytest.mark.parametrize("size", [0, 1, PART, PART + 1])
async def test_one_call_upload_sizes(env: Env, size: int) -> None:
    data = os.urandom(size)
    response = await upload_bytes(env.api, "sizes", f"f-{size}.bin", data)
    upload = response.upload
    assert upload.state == upload_pb2.UPLOAD_STATE_STAGED
    assert upload.size_bytes == size and upload.committed_bytes == size
    assert upload.sha256 == hashlib.sha256(data).hexdigest()
    assert upload.part_size_bytes == PART
    assert len(upload.parts) == -(-size // PART)
    assert response.committed_by_stream == size
    assert await env.staged_sha256(upload.uid) == hashlib.sha256(data).hexdigest()
    assert await env.leftovers() == {"rows": 1, "objects": 1, "multipart": 0, "versions": 0}


async def test_one_call_upload_of_200_mb(env: Env) -> None:
    data = os.urandom(200 * 1000 * 1000)
    response = await upload_bytes(env.api, "big", "big.bin", data, chunk=8 * MiB)
    assert response.upload.state == upload_pb2.UPLOAD_STATE_STAGED
    assert response.upload.part_size_bytes == 64 * MiB
    assert await env.staged_sha256(response.upload.uid) == hashlib.sha256(data).hexdigest()
    await env.store.delete(f"staging/{env.namespace}/{response.upload.uid}")  # moto holds objects in memory


async def test_undeclared_size_with_sha256_at_finish(env: Env) -> None:
    data = os.urandom(PART * 2 + 12345)
    response = await upload_bytes(env.api, "nosize", "x.bin", data, declare=False, finish_sha=True, crc=False)
    assert response.upload.size_bytes == len(data)
    assert not response.upload.HasField("declared_size_bytes")
    assert response.upload.sha256 == hashlib.sha256(data).hexdigest()
    assert await env.staged_sha256(response.upload.uid) == response.upload.sha256


async def test_create_then_upload_by_name_and_request_id_is_idempotent(env: Env) -> None:
    data = os.urandom(1000)
    request = create_request("named", "n.csv", len(data), request_id="req-1")
    first = (await env.api.uploads.CreateUpload(request)).upload
    again = (await env.api.uploads.CreateUpload(request)).upload
    assert first.name == again.name and first.state == upload_pb2.UPLOAD_STATE_OPEN
    assert first.name == f"namespaces/{env.namespace}/uploads/{first.uid}"
    response = await env.api.uploads.Upload(stream_of(resume_messages(first.name, 0, data)))
    assert response.upload.state == upload_pb2.UPLOAD_STATE_STAGED
    got = (await env.api.uploads.GetUpload(pb.GetUploadRequest(name=first.name))).upload
    assert got.state in AFTER_STAGING and got.size_bytes == 1000
    assert await env.leftovers() == {"rows": 1, "objects": 1, "multipart": 0, "versions": 0}


async def _send_until(env: Env, messages: list[pb.UploadRequest], stop_after: int,
                      landed: int = 0) -> str | None:
    """Send messages, then break the stream after `stop_after` bytes; return the upload's name.

    None when the server refused the header with WRONG_OFFSET: the part the previous broken stream had
    in flight landed after we asked for the committed size (the client simply asks again).
    With `landed`, wait until the server has committed that many bytes before breaking the stream."""
    sent = 0
    broken = asyncio.Event()

    async def requests():  # type: ignore[no-untyped-def]
        nonlocal sent
        for message in messages:
            if message.WhichOneof("kind") == "chunk":
                if sent >= stop_after:
                    broken.set()
                    await asyncio.Event().wait()  # hold the stream open until it is cancelled
                sent += len(message.chunk.data)
            yield message

    call = env.api.uploads.Upload(requests())
    outcome = asyncio.ensure_future(finish(call))  # watching from the start: the server's status, if it refuses
    metadata = dict(await call.initial_metadata())
    if "x-quarry-upload" not in metadata:
        with pytest.raises(aio.AioRpcError) as raised:
            await outcome
        assert error_info(raised.value)[0] == "WRONG_OFFSET", raised.value
        return None
    name = metadata["x-quarry-upload"]
    waiter = asyncio.ensure_future(broken.wait())
    done, _ = await asyncio.wait([waiter, outcome], return_when=asyncio.FIRST_COMPLETED)
    if waiter in done:
        if landed:
            await _wait_committed(env, name, landed)
        call.cancel()  # the connection drops mid-stream
    waiter.cancel()
    return str(name)


async def _wait_committed(env: Env, name: str, size: int) -> None:
    """Wait for the part a broken stream had received to land (its commit outlives the stream)."""
    for _ in range(100):
        upload = (await env.api.uploads.GetUpload(pb.GetUploadRequest(name=name))).upload
        if upload.committed_bytes >= size:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} never reached {size} committed bytes")


async def _resume(env: Env, name: str, data: bytes, offset: int) -> pb.UploadResponse:
    """Resume from `offset`, correcting it from the server's WRONG_OFFSET answer if needed."""
    for _ in range(5):
        try:
            return await env.api.uploads.Upload(stream_of(resume_messages(name, offset, data[offset:])))
        except aio.AioRpcError as error:
            reason, metadata = error_info(error)
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and reason == "WRONG_OFFSET", error
            offset = int(metadata["expected_offset"])
    raise AssertionError("could not resume")


# --- broken streams, as a property ---------------------------------------------------------------------------

SMALL_PART = SMALL_PART_BYTES  # the part size of the small-parts servers: boundaries come three times sooner
# Refusals that tell a resuming client to ask where to continue: a part the previous (broken) stream had in flight
# landed after the client asked (WRONG_OFFSET names the new offset), or landed while this stream was writing it.
RESUME_AGAIN = {"WRONG_OFFSET", "PART_ALREADY_WRITTEN"}


@dataclass(frozen=True)
class BreakPlan:
    """A file, the chunk size its client sends, and how many bytes each broken stream sends before it breaks."""

    size: int
    chunk: int
    breaks: tuple[int, ...]


@st.composite
def break_plans(draw: st.DrawFn) -> BreakPlan:
    # Sizes and break points are drawn around part boundaries, where the bugs would be: k whole parts plus a
    # tail; a stream breaks k' parts (plus or minus up to a MiB) after where it started, which is a boundary.
    parts = draw(st.integers(0, 2), label="whole parts")
    size = parts * SMALL_PART + draw(st.integers(1, SMALL_PART), label="tail")
    chunk = draw(st.integers(64 * 1024, 4 * MiB), label="chunk")
    stop = st.builds(lambda k, delta: max(0, k * SMALL_PART + delta), st.integers(0, parts + 1),
                     st.integers(-MiB, MiB))
    breaks = draw(st.lists(stop, max_size=4), label="breaks")
    return BreakPlan(size, chunk, tuple(breaks))


async def _stream(api: Api, name: str, offset: int, data: bytes, chunk: int, stop: int | None) -> str | None:
    """One stream resuming `name` at `offset`; broken (the call cancelled) once `stop` bytes are handed to gRPC,
    or, with `stop` None, finished. Returns the refusal's reason, None when broken or finished."""
    reached = asyncio.Event()

    async def requests() -> AsyncIterator[pb.UploadRequest]:
        yield pb.UploadRequest(header=pb.UploadHeader(upload=name, write_offset=offset))
        sent = 0
        for message in chunk_messages(data, chunk):
            if stop is not None and sent >= stop:
                break
            yield message
            sent += len(message.chunk.data)
        if stop is None:
            yield pb.UploadRequest(finish=pb.UploadFinish())
            return
        reached.set()
        await asyncio.Event().wait()  # the connection hangs until it is dropped

    call = api.uploads.Upload(requests())
    answered = asyncio.ensure_future(finish(call))  # a refusal read as the server said it (see bench/aio_calls.py)
    waiter = asyncio.ensure_future(reached.wait())
    await asyncio.wait([answered, waiter], return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if not answered.done():
        call.cancel()  # the connection drops mid-stream
        with contextlib.suppress(asyncio.CancelledError, aio.AioRpcError):
            await answered
        return None
    try:
        answered.result()
    except aio.AioRpcError as error:
        reason = error_info(error)[0]
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and reason in RESUME_AGAIN, error
        return reason
    return None


def _whole_parts(upload: upload_pb2.Upload, size: int) -> None:
    """Only durably written parts count, and they are 1..n without a gap, all full but the file's last one."""
    committed = upload.committed_bytes
    assert upload.state == upload_pb2.UPLOAD_STATE_OPEN
    assert committed % SMALL_PART == 0 or committed == size, (committed, size)
    sizes = [SMALL_PART] * (committed // SMALL_PART) + ([committed % SMALL_PART] if committed % SMALL_PART else [])
    assert [(p.part_number, p.size_bytes) for p in upload.parts] == list(enumerate(sizes, start=1))


@pytest.fixture(params=STORE_KINDS)
def small_parts(request: pytest.FixtureRequest) -> ServerHandle:
    return request.getfixturevalue(f"small_parts_{request.param}")  # type: ignore[no-any-return]


@settings(max_examples=20, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(plan=break_plans())
async def test_broken_streams_resume_to_an_identical_object(small_parts: ServerHandle, stores: dict[str, ObjectStore],
                                                           pools: dict[str, asyncpg.Pool], plan: BreakPlan) -> None:
    """Whatever the size, the chunk size and where the streams break, a client that resumes from GetUpload's
    committed size ends with exactly its file staged, and nothing else kept."""
    api = open_api(small_parts.address)  # a namespace per example
    env = Env(api, small_parts, stores[small_parts.storage_kind], pools[small_parts.storage_kind])
    try:
        data = random.Random(plan.size).randbytes(plan.size)
        sha = hashlib.sha256(data).hexdigest()
        opened = (await api.uploads.CreateUpload(create_request("broken", "b.bin", plan.size, sha))).upload
        assert opened.part_size_bytes == SMALL_PART
        for stop in plan.breaks:
            upload = (await api.uploads.GetUpload(pb.GetUploadRequest(name=opened.name))).upload
            _whole_parts(upload, plan.size)
            committed = upload.committed_bytes
            await _stream(api, opened.name, committed, data[committed:], plan.chunk, stop)
        for _ in range(10):  # each refusal means a part landed meanwhile: a few at most
            upload = (await api.uploads.GetUpload(pb.GetUploadRequest(name=opened.name))).upload
            if upload.state != upload_pb2.UPLOAD_STATE_OPEN:
                break
            _whole_parts(upload, plan.size)
            committed = upload.committed_bytes
            if await _stream(api, opened.name, committed, data[committed:], plan.chunk, None) is None:
                break
        done = (await api.uploads.GetUpload(pb.GetUploadRequest(name=opened.name))).upload
        assert done.state in AFTER_STAGING and done.size_bytes == plan.size and done.sha256 == sha
        assert await env.staged_sha256(done.uid) == sha
        assert await env.leftovers() == {"rows": 1, "objects": 1, "multipart": 0, "versions": 0}
        await env.store.delete(f"staging/{env.namespace}/{done.uid}")  # moto holds objects in memory
    finally:
        await api.channel.close()


async def test_retried_one_call_upload_learns_where_to_resume(env: Env) -> None:
    data = os.urandom(2 * PART + 100)
    sha = hashlib.sha256(data).hexdigest()
    header = pb.UploadHeader(create=create_request("retry", "r.bin", len(data), sha, request_id="once"))
    messages = [pb.UploadRequest(header=header), *chunk_messages(data)]
    name = await _send_until(env, messages, PART + MiB, landed=PART)
    assert name is not None
    # The same one-call request again: the server names the upload and the offset to resume from (refused while
    # still sending: the blocking client reports the server's status where grpc.aio may report its failed write).
    with pytest.raises(grpc.RpcError) as raised:
        await upload_blocking(env.server.address, env.namespace, messages, token=env.api.token)
    reason, metadata = error_info(raised.value)
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION and reason == "WRONG_OFFSET"
    assert metadata["expected_offset"] == str(PART)
    response = await _resume(env, name, data, int(metadata["expected_offset"]))
    assert response.upload.state == upload_pb2.UPLOAD_STATE_STAGED
    assert await env.staged_sha256(response.upload.uid) == sha


async def test_four_parallel_streams_on_one_upload(env: Env) -> None:
    data = os.urandom(5 * PART + 777)  # under 100 MB, so 16 MiB parts: 6 of them
    upload = (await env.api.uploads.CreateUpload(
        create_request("parallel", "p.bin", len(data), hashlib.sha256(data).hexdigest()))).upload
    assert upload.part_size_bytes == PART
    plan = {0: [4, 2], 1: [1], 2: [6, 3], 3: [5]}  # part numbers per stream, in no particular order

    async def stream(parts: list[int]) -> None:
        for number in parts:
            start = (number - 1) * PART
            piece = data[start:start + PART]
            last = start + len(piece) == len(data)
            await env.api.uploads.Upload(stream_of(resume_messages(
                upload.name, start, piece, finish=last, keep_open=True)))

    await asyncio.gather(*(stream(parts) for parts in plan.values()))
    before = (await env.api.uploads.GetUpload(pb.GetUploadRequest(name=upload.name))).upload
    assert before.state == upload_pb2.UPLOAD_STATE_OPEN and len(before.parts) == 6
    done = (await env.api.uploads.CompleteUpload(pb.CompleteUploadRequest(name=upload.name))).upload
    assert done.state == upload_pb2.UPLOAD_STATE_STAGED and done.size_bytes == len(data)
    assert await env.staged_sha256(done.uid) == hashlib.sha256(data).hexdigest()
    # Completing again is harmless.
    again = (await env.api.uploads.CompleteUpload(pb.CompleteUploadRequest(name=upload.name))).upload
    assert again.state in AFTER_STAGING  # a worker may have started on it


async def test_resume_through_another_server_process(env: Env, stack_envs: dict[str, dict[str, str]],
                                                     tmp_path: Path) -> None:
    data = os.urandom(2 * PART + 5)
    name = await _send_until(env, one_call_messages("other", "o.bin", data), PART + MiB, landed=PART)
    assert name is not None
    other = start_server(stack_envs[env.server.storage_kind], tmp_path, "second", env.server.storage_kind)
    try:
        api = open_api(other.address, env.namespace)
        upload = (await api.uploads.GetUpload(pb.GetUploadRequest(name=name))).upload
        assert upload.committed_bytes == PART
        env.api = api
        response = await _resume(env, name, data, upload.committed_bytes)
        assert response.upload.state == upload_pb2.UPLOAD_STATE_STAGED
        assert await env.staged_sha256(response.upload.uid) == hashlib.sha256(data).hexdigest()
        await api.channel.close()
    finally:
        other.process.stop()


async def test_32_concurrent_uploads_of_20_mb(server_file: ServerHandle, stores: dict[str, ObjectStore]) -> None:
    # One store is enough here (on moto the 640 MB would sit in its memory).
    api = open_api(server_file.address)
    store = stores["file"]
    blobs = [os.urandom(20 * 1000 * 1000) for _ in range(4)]

    async def one(index: int) -> str:
        response = await upload_bytes(api, "many", f"f{index}.bin", blobs[index % 4], chunk=4 * MiB)
        assert response.upload.state == upload_pb2.UPLOAD_STATE_STAGED
        return str(response.upload.uid)

    uids = await asyncio.gather(*(one(i) for i in range(32)))
    for index, uid in enumerate(uids):
        digest = hashlib.sha256()
        async for chunk in store.read(f"staging/{api.namespace}/{uid}"):
            digest.update(chunk)
        assert digest.hexdigest() == hashlib.sha256(blobs[index % 4]).hexdigest()
        await store.delete(f"staging/{api.namespace}/{uid}")
    await api.channel.close()


async def test_cancel_deletes_bytes_and_stops_writes(env: Env) -> None:
    data = os.urandom(PART + 10)
    opened = (await env.api.uploads.CreateUpload(create_request("cancel", "c.bin", len(data)))).upload
    await env.api.uploads.Upload(stream_of(resume_messages(opened.name, 0, data[:PART], finish=False)))
    cancelled = (await env.api.uploads.CancelUpload(pb.CancelUploadRequest(name=opened.name))).upload
    assert cancelled.state == upload_pb2.UPLOAD_STATE_CANCELLED
    assert await env.leftovers() == {"rows": 1, "objects": 0, "multipart": 0, "versions": 0}
    with pytest.raises(aio.AioRpcError) as raised:
        await env.api.uploads.Upload(stream_of(resume_messages(opened.name, PART, data[PART:])))
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(raised.value)[0] == "UPLOAD_CANCELLED"
    # A staged upload can be cancelled too; its object goes.
    staged = (await upload_bytes(env.api, "cancel", "s.bin", data)).upload
    await env.api.uploads.CancelUpload(pb.CancelUploadRequest(name=staged.name))
    assert await env.leftovers() == {"rows": 2, "objects": 0, "multipart": 0, "versions": 0}


async def test_watchers_here_and_on_another_server_see_every_change(
        env: Env, stack_envs: dict[str, dict[str, str]], tmp_path: Path) -> None:
    data = os.urandom(100)
    opened = (await env.api.uploads.CreateUpload(create_request("watch", "w.bin", len(data)))).upload
    # A second server process on the same database and store: its watcher learns of changes made through
    # the first one only by Postgres notifications.
    kind = env.server.storage_kind
    other = await asyncio.to_thread(start_server, stack_envs[kind], tmp_path, "watch-second", kind)
    watchers = [open_api(env.server.address, env.namespace), open_api(env.server.address, env.namespace),
                open_api(other.address, env.namespace)]

    subscribed = [asyncio.Event() for _ in watchers]

    async def watch(api: Api, first: asyncio.Event) -> list[int]:
        states = []
        async for message in api.uploads.WatchUpload(pb.WatchUploadRequest(name=opened.name)):
            states.append(message.upload.state)
            first.set()  # the first message is the state at subscription: no later change is missed
        return states

    try:
        tasks = [asyncio.ensure_future(watch(api, first)) for api, first in zip(watchers, subscribed, strict=True)]
        await asyncio.wait_for(asyncio.gather(*(first.wait() for first in subscribed)), 30)
        await env.api.uploads.Upload(stream_of(resume_messages(opened.name, 0, data)))
        await env.api.uploads.CancelUpload(pb.CancelUploadRequest(name=opened.name))
        results = await asyncio.wait_for(asyncio.gather(*tasks), 20)
        for states in results:
            assert states[0] == upload_pb2.UPLOAD_STATE_OPEN
            assert upload_pb2.UPLOAD_STATE_STAGED in states
            assert states[-1] == upload_pb2.UPLOAD_STATE_CANCELLED
    finally:
        for api in watchers:
            await api.channel.close()
        await asyncio.to_thread(other.process.stop)


async def test_list_uploads_filters_and_pages(env: Env) -> None:
    for index in range(5):
        await upload_bytes(env.api, "lista" if index % 2 else "listb", f"{index}.bin", b"x" * index)
    for dataset, path in (("lista", "open1.bin"), ("lista", "open2.bin"), ("listb", "open3.bin")):
        await env.api.uploads.CreateUpload(create_request(dataset, path, 10))
    seen: list[str] = []
    token = ""
    while True:
        page = await env.api.uploads.ListUploads(pb.ListUploadsRequest(page_size=2, page_token=token))
        seen += [u.name for u in page.uploads]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen)) == 8
    # OPEN uploads stay OPEN (finished ones may be moving through validation): filter on those.
    opened = await env.api.uploads.ListUploads(pb.ListUploadsRequest(filter='state = OPEN AND dataset = "lista"'))
    assert sorted(u.path for u in opened.uploads) == ["open1.bin", "open2.bin"]
    assert all(u.state == upload_pb2.UPLOAD_STATE_OPEN and u.dataset == "lista" for u in opened.uploads)
    prefixed = await env.api.uploads.ListUploads(pb.ListUploadsRequest(filter="state = UPLOAD_STATE_OPEN"))
    assert len(prefixed.uploads) == 3
    listb = await env.api.uploads.ListUploads(pb.ListUploadsRequest(filter='dataset = "listb"'))
    assert sorted(u.path for u in listb.uploads) == ["0.bin", "2.bin", "4.bin", "open3.bin"]


def bytes_received(metrics_port: int) -> float:
    """The server's count of upload bytes received, from its /metrics."""
    for line in read_metrics(metrics_port).splitlines():
        if line.startswith("quarry_upload_bytes_received_total "):
            return float(line.split()[1])
    return 0.0


def _fds_on(pid: int, directory: Path) -> list[str]:
    """The files under `directory` that process `pid` holds open."""
    held = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith(str(directory)):
            held.append(target)
    return held


async def test_a_part_received_after_a_failed_commit_is_discarded(env: Env) -> None:
    # Two streams race for part 1 with different bytes: one records it, the other's commit fails
    # (PART_CONFLICT) while that stream receives part 2. Part 2 was never handed to a commit, so the stream
    # still owns it and discards it: on the local store no descriptor of the multipart file stays open.
    opened = (await env.api.uploads.CreateUpload(create_request("race", "r.bin", 3 * PART))).upload
    gates = {"a": asyncio.Event(), "b": asyncio.Event()}

    async def stream(gate: asyncio.Event, data: bytes):  # type: ignore[no-untyped-def]
        messages = resume_messages(opened.name, 0, data, finish=False)
        yield messages[0]
        yield messages[1]  # the first MiB: the server opens part 1, which nobody has recorded yet
        await gate.wait()
        for message in messages[2:]:
            yield message

    received = await asyncio.to_thread(bytes_received, env.server.metrics_port)
    first = asyncio.ensure_future(env.api.uploads.Upload(stream(gates["a"], b"\1" * PART)))
    second = asyncio.ensure_future(env.api.uploads.Upload(stream(gates["b"], b"\2" * (2 * PART))))

    async def both_first_chunks_in() -> bool:
        # The server counts a chunk's bytes as it takes the chunk, just before it opens the chunk's part.
        return await asyncio.to_thread(bytes_received, env.server.metrics_port) >= received + 2 * MiB

    await eventually(both_first_chunks_in, "the first MiB of both streams received")
    gates["a"].set()
    assert (await first).committed_by_stream == PART
    gates["b"].set()
    with pytest.raises(aio.AioRpcError) as raised:
        await second
    assert error_info(raised.value)[0] == "PART_CONFLICT", raised.value
    current = (await env.api.uploads.GetUpload(pb.GetUploadRequest(name=opened.name))).upload
    assert [p.part_number for p in current.parts] == [1]
    if env.server.storage_kind == "file":
        root = Path(env.server.env["QUARRY_STORAGE_URL"].removeprefix("file://"))
        assert _fds_on(env.server.process.pid, root / ".multipart") == []
    await env.api.uploads.CancelUpload(pb.CancelUploadRequest(name=opened.name))
