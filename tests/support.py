"""Test helpers: real service processes, and a namespaced gRPC client."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from quarry.v1 import (
    capabilities_service_pb2_grpc,
    dataset_service_pb2_grpc,
    upload_service_pb2,
    upload_service_pb2_grpc,
)

from server.listen_ports import free_port

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T | None]], what: str, timeout: float = 30,
                     interval: float = 0.05) -> T:
    """Poll `check` until it returns something other than None (or False); fail naming `what` after `timeout`
    seconds. For waiting on an event that has no notification of its own."""
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found is not None and found is not False:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        await asyncio.sleep(interval)


def clean_env(*, without: Iterable[str] = (), **extra: str) -> dict[str, str]:
    """The test process's environment without QUARRY_* variables (nor the names in `without`), plus `extra`."""
    dropped = set(without)
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUARRY_") and k not in dropped}
    env.update(extra)
    return env


def read_metrics(port: int) -> str:
    """The Prometheus text a server or worker serves on 127.0.0.1:`port`/metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


@dataclass
class QuarryProcess:
    """A `python -m server` or `python -m workers` child process with its log file."""

    module: str
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> QuarryProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115
        try:
            self.process = subprocess.Popen([sys.executable, "-m", self.module], env=self.env, cwd=ROOT,
                                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


@dataclass
class ServerHandle:
    """A running server: its address, metrics port, environment and process."""

    address: str
    metrics_port: int
    env: dict[str, str]
    process: QuarryProcess
    storage_kind: str
    flight_address: str = ""  # host:port of its Arrow Flight endpoint

    @property
    def flight_location(self) -> str:
        """The Flight endpoint as a client's location."""
        return f"grpc+tcp://{self.flight_address}"


def wait_serving(address: str, timeout: float = 60, process: QuarryProcess | None = None,
                 service: str = "") -> None:
    """Block until the health check of `service` says SERVING."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if process is not None and process.process is not None and process.process.poll() is not None:
                raise RuntimeError(f"server exited with {process.process.returncode}:\n{process.log()[-3000:]}")
            if time.monotonic() > deadline:
                detail = process.log()[-3000:] if process else ""
                raise TimeoutError(f"{address} not SERVING after {timeout}s\n{detail}")
            time.sleep(0.1)


def start_server(env: dict[str, str], log_dir: Path, name: str, storage_kind: str, *,
                 ready_service: str = "") -> ServerHandle:
    """Start a server on free ports and wait until it is SERVING (overall, or `ready_service`)."""
    port, metrics_port, flight_port = free_port(), free_port(), free_port()
    # Flight on, with 1 MiB endpoints: the test files are small, and a split must still be seen.
    env = {"QUARRY_FLIGHT_ADDRESS": f"127.0.0.1:{flight_port}", "QUARRY_FLIGHT_SPLIT_BYTES": str(1 << 20), **env,
           "QUARRY_GRPC_ADDRESS": f"127.0.0.1:{port}", "QUARRY_METRICS_PORT": str(metrics_port)}
    process = QuarryProcess("server", env, log_dir / f"{name}.log").start()
    wait_serving(env["QUARRY_GRPC_ADDRESS"], process=process, service=ready_service)
    return ServerHandle(env["QUARRY_GRPC_ADDRESS"], metrics_port, env, process, storage_kind,
                        env["QUARRY_FLIGHT_ADDRESS"])


class _WithMetadata:
    """Adds fixed metadata (the namespace) to every call. grpc.aio files an interceptor under the first
    kind it matches, so each kind needs its own class."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def _details(self, details: Any) -> Any:
        return details._replace(metadata=tuple(details.metadata or ()) + self._metadata)


class _UnaryUnary(_WithMetadata, aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _UnaryStream(_WithMetadata, aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _StreamUnary(_WithMetadata, aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


class _StreamStream(_WithMetadata, aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


def metadata_interceptors(metadata: tuple[tuple[str, str], ...]) -> list[Any]:
    """Client interceptors adding `metadata` to calls of every kind."""
    return [kind(metadata) for kind in (_UnaryUnary, _UnaryStream, _StreamUnary, _StreamStream)]


@dataclass
class Api:
    """Stubs of every Quarry service on one channel, acting in one namespace."""

    channel: aio.Channel
    namespace: str
    datasets: Any = field(init=False)
    uploads: Any = field(init=False)
    capabilities: Any = field(init=False)
    health: Any = field(init=False)

    def __post_init__(self) -> None:
        self.datasets = dataset_service_pb2_grpc.DatasetServiceStub(self.channel)
        self.uploads = upload_service_pb2_grpc.UploadServiceStub(self.channel)
        self.capabilities = capabilities_service_pb2_grpc.CapabilitiesServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    @property
    def parent(self) -> str:
        return f"namespaces/{self.namespace}"


def open_api(address: str, namespace: str | None = None, max_message: int = 64 << 20) -> Api:
    """An Api in a fresh namespace (each test gets its own, which isolates it)."""
    namespace = namespace or f"t-{uuid.uuid4().hex[:12]}"
    channel = aio.insecure_channel(address, interceptors=metadata_interceptors((("x-quarry-namespace", namespace),)),
                                   options=[("grpc.max_receive_message_length", max_message),
                                            ("grpc.max_send_message_length", max_message)])
    return Api(channel, namespace)


async def upload_blocking(address: str, namespace: str, messages: Iterable[upload_service_pb2.UploadRequest],
                          timeout: float = 120) -> upload_service_pb2.UploadResponse:
    """One Upload call from grpc's blocking client, in a thread. It reports the server's status even when the
    server ends the call while the client is still sending, where grpc.aio may report its own failed write
    (INTERNAL "Internal error from Core") instead."""
    def call() -> upload_service_pb2.UploadResponse:
        with grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
            stub = upload_service_pb2_grpc.UploadServiceStub(channel)
            response: upload_service_pb2.UploadResponse = stub.Upload(
                iter(list(messages)), metadata=(("x-quarry-namespace", namespace),), timeout=timeout)
            return response

    return await asyncio.to_thread(call)


def error_info(error: grpc.RpcError) -> tuple[str, dict[str, str]]:
    """(reason, metadata) of the ErrorInfo detail of a failed call."""
    from google.rpc import error_details_pb2, status_pb2

    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    return info.reason, dict(info.metadata)
    return "", {}


def field_violations(error: grpc.RpcError) -> list[str]:
    """Field paths of the BadRequest detail of a failed call."""
    from google.rpc import error_details_pb2, status_pb2

    fields: list[str] = []
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                    bad = error_details_pb2.BadRequest()
                    detail.Unpack(bad)
                    fields += [v.field for v in bad.field_violations]
    return fields
