"""The server process: health per dependency, reflection, metrics, graceful shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from quarry.v1 import upload_pb2
from quarry.v1 import upload_service_pb2 as pb

from server.embedded import EmbeddedRedis
from tests.support import (
    ServerHandle,
    eventually,
    issue_token,
    open_api,
    read_metrics,
    server_operator,
    start_server,
    token_channel,
)
from tests.uploading import MiB, create_request, one_call_messages, stream_of

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
QUARRY_SERVICES = {"quarry.v1.DatasetService", "quarry.v1.UploadService", "quarry.v1.CapabilitiesService",
                   "quarry.v1.TokenService", "quarry.v1.NamespaceService", "quarry.v1.AuditService"}


def health_of(address: str, service: str = "") -> int:
    with grpc.insecure_channel(address) as channel:
        try:
            return int(health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=5).status)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return -1
            raise


def test_health_overall_and_per_dependency(quarry: ServerHandle) -> None:
    for service in ["", "postgres", "redis", "object-store", *QUARRY_SERVICES]:
        assert health_of(quarry.address, service) == SERVING, service
    assert health_of(quarry.address, "no-such-service") == -1


def test_reflection_lists_every_service(server_file: ServerHandle) -> None:
    api_token = issue_token(server_file.address, server_operator(server_file.address), {"default": "reader"})
    with token_channel(server_file.address, api_token) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert QUARRY_SERVICES | {"grpc.health.v1.Health"} <= services
        descriptor = database.FindFileContainingSymbol("quarry.v1.UploadService")
        assert descriptor.name == "quarry/v1/upload_service.proto"
    # Reflection needs a token (any valid one); health does not.
    with grpc.insecure_channel(server_file.address) as channel, pytest.raises(grpc.RpcError) as refused:
        ProtoReflectionDescriptorDatabase(channel).get_services()
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]


async def test_metrics_endpoint(server_file: ServerHandle) -> None:
    api = open_api(server_file.address)
    await api.uploads.Upload(stream_of(one_call_messages("metrics", "m.bin", b"x" * 1000)))
    await api.channel.close()
    text = await asyncio.to_thread(read_metrics, server_file.metrics_port)
    assert 'quarry_dependency_up{dependency="postgres"} 1.0' in text
    assert 'quarry_grpc_handled_total{code="OK",method="/quarry.v1.UploadService/Upload"}' in text
    received = [line for line in text.splitlines() if line.startswith("quarry_upload_bytes_received_total ")]
    assert received and float(received[0].split()[1]) >= 1000
    assert 'quarry_upload_parts_written_total{store="file"}' in text
    assert "quarry_upload_part_write_seconds_bucket" in text
    assert "quarry_upload_active_streams 0.0" in text
    assert 'quarry_uploads{state="STAGED"}' in text


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    redis = EmbeddedRedis(tmp_path / "redis", persistent=False, die_with_parent=False)  # restarted mid-test
    redis.start()
    yield redis
    redis.stop()


def wait_for_status(address: str, service: str, wanted: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while health_of(address, service) != wanted:
        assert time.monotonic() < deadline, f"{service!r} never became {wanted}"
        time.sleep(0.2)


def test_health_follows_a_dependency_down_and_back(stack_envs: dict[str, dict[str, str]], tmp_path: Path,
                                                   own_redis: EmbeddedRedis) -> None:
    env = dict(stack_envs["file"], QUARRY_REDIS_URL=own_redis.url)
    handle = start_server(env, tmp_path, "server-redis", "file")
    try:
        own_redis.stop()
        wait_for_status(handle.address, "redis", NOT_SERVING)
        assert health_of(handle.address) == NOT_SERVING
        assert health_of(handle.address, "postgres") == SERVING
        own_redis.start()
        wait_for_status(handle.address, "", SERVING)
    finally:
        assert handle.process.stop() == 0


def test_sigterm_stops_gracefully(stack_envs: dict[str, dict[str, str]], tmp_path: Path) -> None:
    handle = start_server(stack_envs["file"], tmp_path, "server-stop", "file")
    with grpc.insecure_channel(handle.address) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
        assert next(watch).status == SERVING
        started = time.monotonic()
        handle.process.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        # Watchers learn the server is going away before it stops.
        assert next(watch).status == NOT_SERVING
    assert handle.process.stop(timeout=30) == 0
    assert time.monotonic() - started < 15
    assert '"message": "stopped"' in handle.process.log()


async def test_sigterm_lets_an_upload_in_flight_finish(stack_envs: dict[str, dict[str, str]], tmp_path: Path) -> None:
    handle = start_server(dict(stack_envs["file"], QUARRY_SHUTDOWN_GRACE_SECONDS="20"), tmp_path, "server-drain",
                          "file")
    api = open_api(handle.address)
    block = os.urandom(MiB)
    size = 20 * MiB
    started = asyncio.Event()

    async def requests() -> AsyncIterator[pb.UploadRequest]:
        yield pb.UploadRequest(header=pb.UploadHeader(create=create_request("drain", "d.bin", size)))
        for index in range(20):
            if index == 2:
                started.set()
            await asyncio.sleep(0.1)  # a slow client: the upload is still running at SIGTERM
            yield pb.UploadRequest(chunk=pb.UploadChunk(data=block))
        yield pb.UploadRequest(finish=pb.UploadFinish())

    latecomer = open_api(handle.address)
    call = api.uploads.Upload(requests())
    await started.wait()
    handle.process.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    # New calls are refused (as soon as the server stops accepting them) while the one in flight carries on.

    async def refusing() -> bool:
        # A probe that races the start of the shutdown may be answered, or accepted and then CANCELLED: ask again.
        try:
            await latecomer.uploads.ListUploads(pb.ListUploadsRequest(), timeout=5)
        except aio.AioRpcError as error:
            return error.code() == grpc.StatusCode.UNAVAILABLE
        return False

    await eventually(refusing, "new calls refused after SIGTERM", timeout=10)
    with pytest.raises(aio.AioRpcError) as refused:
        await latecomer.uploads.CreateUpload(create_request("drain", "late.bin", 1), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert not call.done()
    await latecomer.channel.close()
    response = await call
    assert response.upload.state == upload_pb2.UPLOAD_STATE_STAGED and response.upload.size_bytes == size
    await api.channel.close()
    assert await asyncio.to_thread(handle.process.stop, signal.SIGTERM, 30) == 0


def test_large_blocks_are_mapped_on_glibc() -> None:
    """The server fixes glibc's mmap threshold so freed part buffers leave the process (see server.app)."""
    import platform

    from server.app import map_large_blocks

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    assert map_large_blocks() is True
