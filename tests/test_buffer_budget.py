"""The server-wide buffer budget, idle streams, and failing a stream early.

The budget's rules are tested on the object itself (grants, first come first served, the waiting streams'
share, timeouts, cancellation); then on a real server process with a small budget: a second stream waits and
is refused with RESOURCE_EXHAUSTED and RetryInfo having created nothing, a stalled stream is ended with
ABORTED (STREAM_IDLE) and its upload resumes, and a stream refused midway costs the client no more than a few
MiB more of sending, while a plain generated client reads the real status and ErrorInfo.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import google_crc32c
import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from quarry.v1 import upload_pb2
from quarry.v1 import upload_service_pb2 as pb
from quarry.v1 import upload_service_pb2_grpc as pb_grpc

from server.domain.budget import BufferBudget, WriterBytes
from server.model.errors import BufferBudgetSpent, ResourceExhausted
from tests.support import ServerHandle, bearer, error_info, namespace_token, open_api, read_metrics, start_server
from tests.uploading import MiB, create_request, resume_messages, stream_of

# --- the budget itself ---------------------------------------------------------------------------------------


async def test_grants_wait_first_come_first_served_and_time_out() -> None:
    budget = BufferBudget(400, wait_seconds=5)  # 300 for streams at work, 100 for the windows of waiting ones
    assert (budget.limit, budget.queue_limit) == (300, 100)
    await budget.take(250, "a")
    second = asyncio.ensure_future(budget.take(100, "b"))
    third = asyncio.ensure_future(budget.take(10, "c"))  # small enough, but after b: it waits its turn
    await asyncio.sleep(0.05)
    assert not second.done() and not third.done()
    budget.give(250)
    await asyncio.wait_for(asyncio.gather(second, third), 1)
    assert budget.held == 110
    with pytest.raises(BufferBudgetSpent) as spent:
        await budget.take(250, "d", wait=0.1)
    assert spent.value.retryable and spent.value.retry_after == 1.0 and spent.value.kind.value == "RESOURCE_EXHAUSTED"
    assert budget.held == 110 and not budget._waiters
    with pytest.raises(ResourceExhausted) as never:
        await budget.take(301, "e")
    assert never.value.reason == "BUFFER_BUDGET_TOO_SMALL" and not never.value.retryable


async def test_a_cancelled_waiter_takes_nothing() -> None:
    budget = BufferBudget(400, wait_seconds=5)
    await budget.take(300, "a")
    waiter = asyncio.ensure_future(budget.take(50, "b"))
    await asyncio.sleep(0.05)
    waiter.cancel()  # the caller went away while it waited
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert not budget._waiters
    budget.give(100)
    assert budget.held == 200
    await budget.take(100, "c", wait=0)  # nobody left in the queue ahead of it


async def test_waiting_streams_hold_their_windows_from_their_own_share() -> None:
    budget = BufferBudget(400, wait_seconds=0.3)
    async with budget.stream(10, 270, "at work"):
        waiting = [asyncio.ensure_future(_hold_stream(budget, 30)) for _ in range(3)]
        await asyncio.sleep(0.05)
        assert budget.queued == 90
        with pytest.raises(BufferBudgetSpent):  # the waiting share (100) has no room for another window
            async with budget.stream(30, 10, "one too many"):
                pass
        results = await asyncio.gather(*waiting, return_exceptions=True)
        assert all(isinstance(r, BufferBudgetSpent) for r in results)  # timed out: the first one held it all
    assert budget.held == 0 and budget.queued == 0


async def _hold_stream(budget: BufferBudget, window: int) -> None:
    async with budget.stream(window, 10, "waiting"):
        pass


async def test_a_second_writer_is_borrowed_only_when_free() -> None:
    budget = BufferBudget(260, wait_seconds=1)  # 195 for streams at work
    writers = WriterBytes(budget, 100)
    assert writers.take() is True  # the stream's own
    assert writers.take() is False and budget.held == 100  # borrowed
    assert writers.take() is None  # nothing free: the stream lets its last part land first
    writers.give(False)
    writers.give(True)
    assert budget.held == 0 and writers.take() is True


# --- on a server --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_server(stack_envs: dict[str, dict[str, str]], tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        ServerHandle]:
    # 64 MiB: 48 for streams at work, one upload stream's grant being 26 (2 MiB window, two 8 MiB chunks, one
    # 8 MiB part writer); 16 for waiting streams' windows.
    env = dict(stack_envs["file"], QUARRY_MAX_BUFFER_BYTES=str(64 * MiB), QUARRY_BUFFER_WAIT_SECONDS="1",
               QUARRY_STREAM_IDLE_SECONDS="2")
    handle = start_server(env, tmp_path_factory.mktemp("small"), "small-budget", "file")
    yield handle
    handle.process.stop()


def _metric(server: ServerHandle, name: str) -> float:
    for line in read_metrics(server.metrics_port).splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name}")


def _retry_delay(error: grpc.RpcError) -> float | None:
    for key, value in error.trailing_metadata() or ():  # type: ignore[attr-defined]
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                    info = error_details_pb2.RetryInfo()
                    detail.Unpack(info)
                    return info.retry_delay.ToNanoseconds() / 1e9
    return None


async def test_a_stream_past_the_budget_waits_then_is_refused_having_opened_nothing(small_server: ServerHandle) -> None:
    api = open_api(small_server.address)
    try:
        release = asyncio.Event()

        async def holding() -> AsyncIterator[pb.UploadRequest]:
            yield pb.UploadRequest(header=pb.UploadHeader(create=create_request("busy", "a.bin", 4 * MiB)))
            yield pb.UploadRequest(chunk=pb.UploadChunk(data=b"a" * MiB))
            await release.wait()
            yield pb.UploadRequest(chunk=pb.UploadChunk(data=b"a" * (3 * MiB)))
            yield pb.UploadRequest(finish=pb.UploadFinish())

        first = api.uploads.Upload(holding())
        assert "x-quarry-upload" in dict(await first.initial_metadata())  # admitted: it holds its grant
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as refused:
            await api.uploads.Upload(stream_of([pb.UploadRequest(header=pb.UploadHeader(
                create=create_request("busy", "b.bin", 5))), pb.UploadRequest(chunk=pb.UploadChunk(data=b"hello"))]))
        waited = time.monotonic() - started
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_info(refused.value)[0] == "BUFFER_BUDGET_SPENT"
        assert _retry_delay(refused.value) == 1.0
        assert 0.9 < waited < 5, waited  # QUARRY_BUFFER_WAIT_SECONDS=1
        listed = await api.uploads.ListUploads(pb.ListUploadsRequest())
        assert [u.path for u in listed.uploads] == ["a.bin"]  # the refused stream created nothing
        assert _metric(small_server, "quarry_buffer_held_bytes") == 26 * MiB
        release.set()
        assert (await first).upload.state == upload_pb2.UPLOAD_STATE_STAGED
        # Its grant is back: the next stream goes through.
        done = await api.uploads.Upload(stream_of([pb.UploadRequest(header=pb.UploadHeader(
            create=create_request("busy", "b.bin", 5))), pb.UploadRequest(chunk=pb.UploadChunk(data=b"hello")),
            pb.UploadRequest(finish=pb.UploadFinish())]))
        assert done.upload.state == upload_pb2.UPLOAD_STATE_STAGED
        assert _metric(small_server, "quarry_buffer_held_bytes") == 0
    finally:
        await api.channel.close()


async def test_an_idle_stream_is_ended_and_its_upload_resumes(small_server: ServerHandle) -> None:
    api = open_api(small_server.address)
    try:
        data = os.urandom(20 * MiB)  # two parts of 16 MiB
        created = (await api.uploads.CreateUpload(create_request("idle", "i.bin", len(data),
                                                                 hashlib.sha256(data).hexdigest()))).upload

        async def stalling() -> AsyncIterator[pb.UploadRequest]:
            for message in resume_messages(created.name, 0, data[:17 * MiB], finish=False):
                yield message
            await asyncio.Event().wait()  # the client stops sending and never hangs up

        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as ended:
            await asyncio.wait_for(api.uploads.Upload(stalling()), 30)
        assert ended.value.code() == grpc.StatusCode.ABORTED
        reason, metadata = error_info(ended.value)
        assert reason == "STREAM_IDLE" and metadata == {"idle_seconds": "2"}
        assert time.monotonic() - started < 15
        current = (await api.uploads.GetUpload(pb.GetUploadRequest(name=created.name))).upload
        assert current.state == upload_pb2.UPLOAD_STATE_OPEN and current.committed_bytes == 16 * MiB
        assert _metric(small_server, "quarry_buffer_held_bytes") == 0
        resumed = await api.uploads.Upload(stream_of(resume_messages(created.name, 16 * MiB, data[16 * MiB:])))
        assert resumed.upload.state == upload_pb2.UPLOAD_STATE_STAGED and resumed.upload.size_bytes == len(data)
    finally:
        await api.channel.close()


def test_a_stream_refused_midway_is_not_drained_and_a_plain_client_reads_why(small_server: ServerHandle) -> None:
    # A plain generated (blocking) client sends 200 MiB; the 20th MiB has a wrong CRC32C. The server refuses it
    # there: the client gets DATA_LOSS with its ErrorInfo, having sent little more than that (the transport's
    # window, the few MiB the server reads after a refusal, what the sockets hold), not the whole stream.
    sent = [0]
    refused_at = 20 * MiB

    def requests() -> Iterator[pb.UploadRequest]:
        yield pb.UploadRequest(header=pb.UploadHeader(create=create_request("early", "e.bin", 200 * MiB)))
        block = os.urandom(MiB)
        for _ in range(200):
            crc = google_crc32c.value(block) ^ (1 if sent[0] == refused_at else 0)
            sent[0] += len(block)
            yield pb.UploadRequest(chunk=pb.UploadChunk(data=block, crc32c=crc))

    token = namespace_token(small_server.address, "early")
    with grpc.insecure_channel(small_server.address) as channel:
        stub = pb_grpc.UploadServiceStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.Upload(requests(), metadata=(("x-quarry-namespace", "early"), *bearer(token)), timeout=60)
    assert refused.value.code() == grpc.StatusCode.DATA_LOSS  # type: ignore[attr-defined]
    reason, metadata = error_info(refused.value)
    assert reason == "CHECKSUM_MISMATCH" and metadata == {"offset": str(refused_at)}
    assert sent[0] < refused_at + 16 * MiB, f"the client sent {sent[0] / MiB:.0f} MiB"


def test_the_settings_keep_a_whole_stream_in_the_budget(tmp_path: Path) -> None:
    from server.settings import Settings

    assert Settings(max_buffer_bytes=64 * MiB).max_buffer_bytes == 64 * MiB
    with pytest.raises(ValueError, match="at least one upload stream"):
        Settings(max_buffer_bytes=40 * MiB)


async def test_a_download_holds_its_grant_while_it_streams(small_server: ServerHandle, worker_file: object) -> None:
    # A ReadFile is granted its window and three 1 MiB messages while it streams, and gives them back when it
    # ends, read to the end or cancelled half-way by its client.
    from quarry.v1 import dataset_service_pb2 as dpb

    api = open_api(small_server.address)
    try:
        data = os.urandom(40 * MiB)  # more than the transport holds unread: the read is still going when looked at
        created = (await api.uploads.CreateUpload(create_request(
            "reads", "r.bin", len(data), hashlib.sha256(data).hexdigest(), auto_commit=True))).upload
        await api.uploads.Upload(stream_of(resume_messages(created.name, 0, data)))
        for _ in range(600):
            upload = (await api.uploads.GetUpload(pb.GetUploadRequest(name=created.name))).upload
            if upload.state == upload_pb2.UPLOAD_STATE_PROMOTED:
                break
            await asyncio.sleep(0.1)
        assert upload.state == upload_pb2.UPLOAD_STATE_PROMOTED
        for cancel in (False, True):
            reading = api.datasets.ReadFile(dpb.ReadFileRequest(version=upload.version, path="r.bin"))
            first = await reading.read()
            assert first.data == data[:MiB]
            assert _metric(small_server, "quarry_buffer_held_bytes") == 5 * MiB  # 2 MiB window + 3 x 1 MiB
            if cancel:
                reading.cancel()
            else:
                rest = [message.data async for message in reading]
                assert first.data + b"".join(rest) == data
            for _ in range(100):
                if _metric(small_server, "quarry_buffer_held_bytes") == 0:
                    break
                await asyncio.sleep(0.05)
            assert _metric(small_server, "quarry_buffer_held_bytes") == 0, f"cancelled={cancel}"
    finally:
        await api.channel.close()


async def test_a_flight_read_holds_its_grant_while_it_streams(small_server: ServerHandle, worker_file: object) -> None:
    # Arrow Flight's DoGet of a table holds its share (the window, a store read, a parsed block, a batch) while
    # it streams, and gives it back when read to the end or cancelled by its client.
    import json

    from pyarrow import flight

    from tests.samples import csv_sample

    api = open_api(small_server.address)
    try:
        sample = csv_sample(3_000_000, path="t.csv")  # ~80 MB: more than the transport holds unread
        created = (await api.uploads.CreateUpload(create_request("tables", sample.path, len(sample.data),
                                                                 sample.sha256, auto_commit=True))).upload
        await api.uploads.Upload(stream_of(resume_messages(created.name, 0, sample.data)))
        for _ in range(600):
            upload = (await api.uploads.GetUpload(pb.GetUploadRequest(name=created.name))).upload
            if upload.state == upload_pb2.UPLOAD_STATE_PROMOTED:
                break
            await asyncio.sleep(0.1)
        assert upload.state == upload_pb2.UPLOAD_STATE_PROMOTED
        ticket = flight.Ticket(json.dumps({"version": upload.version, "path": "t.csv", "columns": None,
                                           "row_groups": None}))
        call = flight.FlightCallOptions(headers=[(b"x-quarry-namespace", api.namespace.encode()),
                                                 (b"authorization", f"Bearer {api.token}".encode())])
        client = flight.connect(small_server.flight_location)
        try:
            for cancel in (False, True):
                reader = await asyncio.to_thread(client.do_get, ticket, call)
                first = await asyncio.to_thread(reader.read_chunk)
                assert first.data.num_rows > 0
                assert _metric(small_server, "quarry_buffer_held_bytes") == 18 * MiB  # 2 MiB window + 16 MiB
                if cancel:
                    reader.cancel()
                else:
                    rest = await asyncio.to_thread(reader.read_all)
                    assert first.data.num_rows + rest.num_rows == sample.rows
                for _ in range(100):
                    if _metric(small_server, "quarry_buffer_held_bytes") == 0:
                        break
                    await asyncio.sleep(0.05)
                assert _metric(small_server, "quarry_buffer_held_bytes") == 0, f"cancelled={cancel}"
        finally:
            client.close()
    finally:
        await api.channel.close()
