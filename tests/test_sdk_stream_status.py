"""The SDK's async upload reads the server's status when the server refuses a stream midway.

The server fails a refused stream at once (it reads at most a few MiB more), so a client is usually still
writing when the status arrives; grpc.aio then replaces the status with its own failed write (INTERNAL
"Internal error from Core"). The SDK's upload stream must read the server's status every time, against a
server that refuses without reading on at all. A busy server's RESOURCE_EXHAUSTED with RetryInfo, on the
other hand, is waited out by `upload_file`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import quarry
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc import aio
from quarry._config import Config
from quarry._retry import RetryPolicy
from quarry._transport import AsyncTransport
from quarry.v1 import upload_pb2, upload_service_pb2_grpc
from quarry.v1 import upload_service_pb2 as pb

from tests.support import open_api, read_metrics, start_server, wait_metric
from tests.uploading import MiB, create_request

pytestmark = pytest.mark.slow


class _RefusingUploads(upload_service_pb2_grpc.UploadServiceServicer):
    """An Upload that accepts the header, reads 8 MiB, then refuses the stream without reading on: the worst
    case for a client still writing (the Quarry server reads up to 4 MiB more first, which narrows it)."""

    async def Upload(self, request_iterator: AsyncIterator[pb.UploadRequest],  # noqa: N802 - the RPC's name
                     context: aio.ServicerContext) -> pb.UploadResponse:
        received = 0
        async for request in request_iterator:
            if request.WhichOneof("kind") == "header":
                await context.send_initial_metadata((("x-quarry-upload", "namespaces/n/uploads/u"),))
            received += len(request.chunk.data)
            if received >= 8 * MiB:
                break
        info = error_details_pb2.ErrorInfo(reason="PART_CONFLICT", domain="quarry.dev")
        detail = any_pb2.Any()
        detail.Pack(info)
        status = status_pb2.Status(code=code_pb2.FAILED_PRECONDITION, message="refused midway", details=[detail])
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "refused midway",
                            trailing_metadata=(("grpc-status-details-bin", status.SerializeToString()),))
        raise AssertionError("unreachable")


async def test_a_stream_refused_midway_is_read_as_the_server_said(tmp_path: Path) -> None:
    server = aio.server(options=[("grpc.http2.lookahead_bytes", 2 * MiB), ("grpc.http2.bdp_probe", 0),
                                 ("grpc.max_receive_message_length", 16 * MiB)])
    upload_service_pb2_grpc.add_UploadServiceServicer_to_server(_RefusingUploads(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    transport = AsyncTransport(Config(f"127.0.0.1:{port}", "n", tmp_path), 30, RetryPolicy())
    block = os.urandom(4 * MiB)

    async def chunks() -> AsyncIterator[pb.UploadRequest]:
        for _ in range(64):  # 256 MiB: far more than the server reads
            yield pb.UploadRequest(chunk=pb.UploadChunk(data=block))

    try:
        reasons = []
        for _ in range(10):  # grpc.aio loses the status in a race, most of the time: every try must read it
            with pytest.raises(quarry.RpcError) as refused:
                await transport.upload_from(pb.UploadRequest(header=pb.UploadHeader(upload="u")), chunks(), 30)
            reasons.append((refused.value.code.name, refused.value.reason))
        assert reasons == [("FAILED_PRECONDITION", "PART_CONFLICT")] * 10
    finally:
        await transport.close()
        await server.stop(0)


async def test_a_busy_server_is_waited_out(stack_envs: dict[str, dict[str, str]], tmp_path: Path) -> None:
    # A budget for one upload stream at a time, and no waiting in line: the second upload is refused with
    # RESOURCE_EXHAUSTED and RetryInfo until the first lets go of its grant, and then goes through.
    env = dict(stack_envs["file"], QUARRY_MAX_BUFFER_BYTES=str(64 * MiB), QUARRY_BUFFER_WAIT_SECONDS="0")
    server = await asyncio.to_thread(start_server, env, tmp_path, "one-at-a-time", "file")
    api = open_api(server.address)
    release = asyncio.Event()

    async def holding():  # type: ignore[no-untyped-def]
        yield pb.UploadRequest(header=pb.UploadHeader(create=create_request("busy", "held.bin", 5)))
        await release.wait()
        yield pb.UploadRequest(chunk=pb.UploadChunk(data=b"hello"))
        yield pb.UploadRequest(finish=pb.UploadFinish())

    try:
        held = api.uploads.Upload(holding())
        assert "x-quarry-upload" in dict(await held.initial_metadata())
        path = tmp_path / "small.bin"
        path.write_bytes(os.urandom(MiB))
        async with quarry.AsyncClient(server.address, namespace=api.namespace, token=api.token,
                                      cache_dir=tmp_path / "cache", streams=1) as client:
            uploading = asyncio.ensure_future(client.upload_file(path, "busy"))
            # Refused, and tried again: two refusals counted while the first upload still holds its grant.
            await wait_metric(server.metrics_port, "quarry_buffer_refusals_total ", 2)
            assert not uploading.done()
            release.set()
            result = await asyncio.wait_for(uploading, 60)
        assert result.upload.state == upload_pb2.UPLOAD_STATE_STAGED
        assert (await held).upload.state == upload_pb2.UPLOAD_STATE_STAGED
        refusals = [line for line in read_metrics(server.metrics_port).splitlines()
                    if line.startswith("quarry_buffer_refusals_total ")]
        assert refusals and float(refusals[0].split()[1]) >= 1  # it was refused, and tried again
    finally:
        release.set()
        await api.channel.close()
        await asyncio.to_thread(server.process.stop)
