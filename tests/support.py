"""Test helpers: real service processes, and a gRPC client with a token of its own namespace.

Every server database gets one operator token per session, issued by the real `quarry admin bootstrap`.
`open_api` has the operator create a fresh namespace and issue a token granted on it (admin, unless asked
otherwise), and returns stubs on a channel that sends that token.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import os
import re
import signal
import socket
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
    audit_service_pb2_grpc,
    capabilities_service_pb2_grpc,
    dataset_service_pb2_grpc,
    namespace_pb2,
    namespace_service_pb2,
    namespace_service_pb2_grpc,
    token_pb2,
    token_service_pb2,
    token_service_pb2_grpc,
    upload_service_pb2,
    upload_service_pb2_grpc,
)

from server.listen_ports import free_ports

ROOT = Path(__file__).resolve().parents[1]
NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
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


async def wait_version(api: Api, name: str, timeout: float = 60) -> Any:
    """Follow a version with WatchVersion until READY or FAILED; return it with its files (GetVersion)."""
    from quarry.v1 import dataset_service_pb2, version_pb2

    final = (version_pb2.VERSION_STATE_READY, version_pb2.VERSION_STATE_FAILED)
    async for message in api.datasets.WatchVersion(dataset_service_pb2.WatchVersionRequest(name=name),
                                                   timeout=timeout):
        if message.version.state in final:
            break
    else:
        raise AssertionError(f"the watch of {name} ended before READY or FAILED")
    return (await api.datasets.GetVersion(dataset_service_pb2.GetVersionRequest(name=name))).version


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


def metric_total(port: int, prefix: str) -> float:
    """The sum of every sample whose line starts with `prefix` (a name, or a name and the start of its labels)."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in read_metrics(port).splitlines() if line.startswith(prefix))


async def wait_metric(port: int, prefix: str, at_least: float, timeout: float = 30) -> float:
    """Wait until the samples `prefix` names add up to `at_least`: the event a test waits for, with a deadline."""
    deadline = time.monotonic() + timeout
    while (total := await asyncio.to_thread(metric_total, port, prefix)) < at_least:
        assert time.monotonic() < deadline, f"{prefix} is {total} after {timeout}s, not {at_least}"
        await asyncio.sleep(0.1)
    return total


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
                 service: str = "", credentials: grpc.ChannelCredentials | None = None) -> None:
    """Block until the health check of `service` says SERVING (over TLS with `credentials`)."""
    deadline = time.monotonic() + timeout
    with (grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address)) as channel:
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
                 credentials: grpc.ChannelCredentials | None = None, ready_service: str = "") -> ServerHandle:
    """Start a server on free ports and wait until it is SERVING (overall, or `ready_service`), its operator
    token registered for open_api; `credentials` to reach a server that speaks TLS."""
    given = env
    for attempt in range(3):
        port, metrics_port, flight_port = free_ports(3)
        # Flight on, with 1 MiB endpoints: the test files are small, and a split must still be seen.
        env = {"QUARRY_FLIGHT_ADDRESS": f"127.0.0.1:{flight_port}", "QUARRY_FLIGHT_SPLIT_BYTES": str(1 << 20),
               **given, "QUARRY_GRPC_ADDRESS": f"127.0.0.1:{port}", "QUARRY_METRICS_PORT": str(metrics_port)}
        process = QuarryProcess("server", env, log_dir / f"{name}.log")
        logged = len(process.log())  # the log is appended to: only this attempt's part is looked at
        process.start()
        try:
            wait_serving(env["QUARRY_GRPC_ADDRESS"], process=process, service=ready_service, credentials=credentials)
            break
        except RuntimeError:
            # A port free a moment ago is in the ephemeral range: another process's outgoing connection can
            # take it before the server binds it. Only that refusal is retried, on fresh ports.
            if attempt == 2 or "cannot listen on" not in process.log()[logged:]:
                raise
    register_server(env["QUARRY_GRPC_ADDRESS"], env)
    return ServerHandle(env["QUARRY_GRPC_ADDRESS"], metrics_port, env, process, storage_kind,
                        env["QUARRY_FLIGHT_ADDRESS"])


# Operator tokens by database URL (one bootstrap per database), and by server address.
_OPERATORS_BY_DATABASE: dict[str, str] = {}
_OPERATORS_BY_ADDRESS: dict[str, str] = {}


def bootstrap(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `quarry admin bootstrap` against the database of `env`."""
    return subprocess.run([sys.executable, "-m", "quarry.cli", "admin", "bootstrap", "--principal", "test-operator"],
                          env=clean_env(**{**{k: v for k, v in env.items() if k.startswith("QUARRY_")},
                                           "QUARRY_LOG_LEVEL": "WARNING"}),
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def operator_token(env: dict[str, str]) -> str:
    """The operator token of the database `env` names, bootstrapped on first use."""
    database = env["QUARRY_DATABASE_URL"]
    if database not in _OPERATORS_BY_DATABASE:
        result = bootstrap(env)
        assert result.returncode == 0, result.stderr
        _OPERATORS_BY_DATABASE[database] = result.stdout.strip()
    return _OPERATORS_BY_DATABASE[database]


def register_server(address: str, env: dict[str, str]) -> str:
    """Remember the operator token of the server at `address` (whose environment is `env`); return it."""
    _OPERATORS_BY_ADDRESS[address] = operator_token(env)
    return _OPERATORS_BY_ADDRESS[address]


def registered_servers() -> set[str]:
    """Addresses of the servers whose operator token is known."""
    return set(_OPERATORS_BY_ADDRESS)


def server_operator(address: str) -> str:
    """The operator token of a server started by `start_server` (or registered)."""
    return _OPERATORS_BY_ADDRESS[address]


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying `token`."""
    return (("authorization", f"Bearer {token}"),)


ROLES = {"reader": token_pb2.ROLE_READER, "writer": token_pb2.ROLE_WRITER, "admin": token_pb2.ROLE_ADMIN}


def create_namespace(address: str, operator: str, namespace: str, **quota: float) -> None:
    """Have the operator create `namespace` (with quota fields) unless it exists."""
    with grpc.insecure_channel(address) as channel:
        stub = namespace_service_pb2_grpc.NamespaceServiceStub(channel)
        try:
            stub.CreateNamespace(namespace_service_pb2.CreateNamespaceRequest(
                namespace_id=namespace, namespace=namespace_pb2.Namespace(
                    quota=namespace_pb2.NamespaceQuota(**quota))),  # type: ignore[arg-type]
                metadata=bearer(operator), timeout=30)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise


def issue_token(address: str, operator: str, grants: dict[str, str], principal: str = "test",
                **fields: Any) -> str:
    """Have the operator issue a token with `grants` (namespace -> role name); return its secret."""
    with grpc.insecure_channel(address) as channel:
        stub = token_service_pb2_grpc.TokenServiceStub(channel)
        token = token_pb2.Token(principal=principal, grants=[
            token_pb2.Grant(namespace=f"namespaces/{ns}", role=ROLES[role]) for ns, role in grants.items()], **fields)
        response = stub.CreateToken(token_service_pb2.CreateTokenRequest(token=token), metadata=bearer(operator),
                                    timeout=30)
        return str(response.secret)


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


class _SyncMetadata(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                    grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    """Adds fixed metadata to every call of a blocking channel."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def _details(self, details: Any) -> Any:
        return _ClientCallDetails(details.method, details.timeout, tuple(details.metadata or ()) + self._metadata,
                                  details.credentials, getattr(details, "wait_for_ready", None),
                                  getattr(details, "compression", None))

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


class _ClientCallDetails(grpc.ClientCallDetails):  # type: ignore[misc]
    def __init__(self, method: str, timeout: Any, metadata: Any, credentials: Any, wait_for_ready: Any,
                 compression: Any) -> None:
        self.method, self.timeout, self.metadata, self.credentials = method, timeout, metadata, credentials
        self.wait_for_ready, self.compression = wait_for_ready, compression


def token_channel(address: str, token: str) -> grpc.Channel:
    """A blocking channel whose every call carries `token`."""
    return grpc.intercept_channel(grpc.insecure_channel(address), _SyncMetadata(bearer(token)))


def metadata_interceptors(metadata: tuple[tuple[str, str], ...]) -> list[Any]:
    """Client interceptors adding `metadata` to calls of every kind."""
    return [kind(metadata) for kind in (_UnaryUnary, _UnaryStream, _StreamUnary, _StreamStream)]


@dataclass
class Api:
    """Stubs of every Quarry service on one channel, acting in one namespace."""

    channel: aio.Channel
    namespace: str
    token: str = ""
    datasets: Any = field(init=False)
    uploads: Any = field(init=False)
    capabilities: Any = field(init=False)
    health: Any = field(init=False)
    tokens: Any = field(init=False)
    namespaces: Any = field(init=False)
    audit: Any = field(init=False)

    def __post_init__(self) -> None:
        self.datasets = dataset_service_pb2_grpc.DatasetServiceStub(self.channel)
        self.uploads = upload_service_pb2_grpc.UploadServiceStub(self.channel)
        self.capabilities = capabilities_service_pb2_grpc.CapabilitiesServiceStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self.tokens = token_service_pb2_grpc.TokenServiceStub(self.channel)
        self.namespaces = namespace_service_pb2_grpc.NamespaceServiceStub(self.channel)
        self.audit = audit_service_pb2_grpc.AuditServiceStub(self.channel)

    @property
    def parent(self) -> str:
        return f"namespaces/{self.namespace}"


def namespace_token(address: str, namespace: str, role: str = "admin") -> str:
    """Have the operator of the server at `address` create `namespace` (unless it exists) and issue a token of
    `role` there; return its secret. A namespace that is no name cannot be made (nor granted): the token is then
    for a fresh one, and a caller still sends the bad name, for the server to refuse."""
    operator = server_operator(address)
    granted = namespace if NAME.match(namespace) else f"t-{uuid.uuid4().hex[:12]}"
    create_namespace(address, operator, granted)
    return issue_token(address, operator, {granted: role})


def open_api(address: str, namespace: str | None = None, max_message: int = 64 << 20, *, role: str = "admin",
             token: str | None = None) -> Api:
    """An Api in a fresh namespace (each test gets its own, which isolates it), with a token of `role` there.

    The namespace is created (when new) and the token issued by the server's operator; with `token` given,
    neither happens and the channel sends that token (for servers in the test's own process, which a
    blocking call from here would deadlock)."""
    namespace = namespace or f"t-{uuid.uuid4().hex[:12]}"
    if token is None:
        token = namespace_token(address, namespace, role)
    channel = aio.insecure_channel(
        address, interceptors=metadata_interceptors((("x-quarry-namespace", namespace), *bearer(token))),
        options=[("grpc.max_receive_message_length", max_message), ("grpc.max_send_message_length", max_message)])
    return Api(channel, namespace, token)


async def upload_blocking(address: str, namespace: str, messages: Iterable[upload_service_pb2.UploadRequest],
                          timeout: float = 120, *, token: str) -> upload_service_pb2.UploadResponse:
    """One Upload call from grpc's blocking client, in a thread. It reports the server's status even when the
    server ends the call while the client is still sending, where grpc.aio may report its own failed write
    (INTERNAL "Internal error from Core") instead."""
    def call() -> upload_service_pb2.UploadResponse:
        with grpc.insecure_channel(address, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
            stub = upload_service_pb2_grpc.UploadServiceStub(channel)
            response: upload_service_pb2.UploadResponse = stub.Upload(
                iter(list(messages)), metadata=(("x-quarry-namespace", namespace), *bearer(token)), timeout=timeout)
            return response

    return await asyncio.to_thread(call)


@functools.cache
def _refusing_socket() -> socket.socket:
    refusing = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    refusing.bind(("127.0.0.1", 0))
    return refusing


def refused_port() -> int:
    """A port of 127.0.0.1 that refuses every connection for as long as this process lives.

    It is bound and never listens, so no other process can take it: a port that was merely free a moment ago can
    be given to a server another test starts, and the "server down" test would then reach it.
    """
    return int(_refusing_socket().getsockname()[1])


async def workers_idle(db: Any, namespace: str, timeout: float = 60) -> None:
    """Wait until no upload or version of `namespace` is in a state the workers move on from (STAGED, VALIDATING;
    PENDING, VALIDATING, PROMOTING). `db` is an asyncpg pool or connection. A test that compares the rows before
    and after a refused call waits for this first: an earlier call that succeeded goes on in the background."""
    async def idle() -> bool:
        return not await db.fetchval(
            """SELECT EXISTS (SELECT FROM uploads u JOIN namespaces n ON n.id = u.namespace_id
                              WHERE n.name = $1 AND u.state IN ('STAGED', 'VALIDATING'))
                   OR EXISTS (SELECT FROM versions v JOIN datasets d ON d.id = v.dataset_id
                              JOIN namespaces n ON n.id = d.namespace_id
                              WHERE n.name = $1 AND v.state IN ('PENDING', 'VALIDATING', 'PROMOTING'))""", namespace)

    await eventually(idle, f"the workers finishing in {namespace}", timeout)


async def diff_pages(api: Api, request: Any) -> list[Any]:
    """Every page of a DiffVersions request, following next_page_token."""
    pages = [await api.datasets.DiffVersions(request)]
    while pages[-1].next_page_token:
        following = type(request)()
        following.CopyFrom(request)
        following.page_token = pages[-1].next_page_token
        pages.append(await api.datasets.DiffVersions(following))
    return pages


def tampered_page_token(token: str) -> str:
    """`token` with one bit of its last byte (the signature's) flipped, re-encoded as the server encodes tokens.

    Editing the base64 text is not enough: the last character of unpadded base64 carries padding bits a decoder
    ignores, and a fixed replacement can equal what was there.
    """
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[-1] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")


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
                    assert info.domain == "quarry.dev", info  # every reason a test checks is in Quarry's domain
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
