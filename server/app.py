"""Build the server once, serve until SIGTERM/SIGINT, then stop gracefully.

Start-up order: dependencies (Postgres and its migrations, Redis, the object store), the gRPC server on
its address, the metrics endpoint, the health probe. Any failure raises ConfigError naming the setting.
On a signal: health goes NOT_SERVING, the server stops accepting calls, and in-flight calls get
`shutdown_grace_seconds` to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading

import grpc
import pyarrow as pa
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc
from quarry.v1 import (
    audit_service_pb2,
    capabilities_service_pb2,
    capabilities_service_pb2_grpc,
    dataset_service_pb2,
    namespace_service_pb2,
    token_service_pb2,
    upload_service_pb2,
)

from server import metrics
from server.api.capabilities import CapabilitiesServicer
from server.api.flight import FlightTls, QuarryFlightServer, start_flight
from server.api.health import HealthReporter
from server.api.interceptors import AdmittingServer
from server.composition import capabilities_of, open_services
from server.connections import Connections, open_connections
from server.domain.gauges import UploadStateSampler
from server.domain.services import Services
from server.listen_ports import ensure_ports_free
from server.model.errors import ConfigError
from server.settings import Settings

log = logging.getLogger(__name__)

QUARRY_SERVICES = (
    dataset_service_pb2.DESCRIPTOR.services_by_name["DatasetService"].full_name,
    upload_service_pb2.DESCRIPTOR.services_by_name["UploadService"].full_name,
    capabilities_service_pb2.DESCRIPTOR.services_by_name["CapabilitiesService"].full_name,
    token_service_pb2.DESCRIPTOR.services_by_name["TokenService"].full_name,
    namespace_service_pb2.DESCRIPTOR.services_by_name["NamespaceService"].full_name,
    audit_service_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name,
)


def build_grpc_server(settings: Settings, deps: Connections, services: Services,
                      health: HealthReporter) -> aio.Server:
    """The gRPC server with every servicer, health and reflection registered (not yet bound)."""
    from server.api.servicers import add_quarry_servicers

    grpc_server = aio.server(
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            # Without this a second server could bind the same port and silently share its traffic.
            ("grpc.so_reuseport", 0),
            ("grpc.keepalive_time_ms", 60_000),
            ("grpc.keepalive_timeout_ms", 20_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
            # A fixed read-ahead per stream instead of one grown by bandwidth probing, which on a fast link
            # let each stream buffer tens of MiB in the transport while the store was slower. It is the HTTP/2
            # stream window: bytes a client may push before the handler reads, which the buffer budget counts.
            ("grpc.http2.bdp_probe", 0),
            ("grpc.http2.lookahead_bytes", settings.stream_window_bytes),
        ],
    )
    # Every handler registered through `server` is wrapped with admission, error mapping, audit and metrics.
    server = AdmittingServer(grpc_server, services.admission)
    capabilities_service_pb2_grpc.add_CapabilitiesServiceServicer_to_server(
        CapabilitiesServicer(capabilities_of(settings, deps.store.kind)), server)
    add_quarry_servicers(server, services, settings.stream_idle_seconds)
    health_pb2_grpc.add_HealthServicer_to_server(health.servicer, server)
    # What reflection.enable_server_reflection does for an aio server (it checks the type, and this is a stand-in).
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(reflection.aio.ReflectionServicer(
        [*QUARRY_SERVICES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME]),
        server)
    return grpc_server


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials from QUARRY_TLS_* (None: plaintext); with a client CA, client certificates are required."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    client_ca = settings.tls_client_ca_file.read_bytes() if settings.tls_client_ca_file is not None else None
    return grpc.ssl_server_credentials([(settings.tls_key_file.read_bytes(), settings.tls_cert_file.read_bytes())],
                                       root_certificates=client_ca, require_client_auth=client_ca is not None)


def _bind(server: aio.Server, address: str, credentials: grpc.ServerCredentials | None = None) -> None:
    try:
        port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    except RuntimeError as exc:
        if credentials is not None:
            raise ConfigError("QUARRY_TLS_CERT_FILE", f"cannot serve TLS on {address} with this certificate and "
                                                      f"key: {exc}") from None
        raise ConfigError("QUARRY_GRPC_ADDRESS", f"cannot listen on {address}: {exc}") from None
    if port == 0:
        raise ConfigError("QUARRY_GRPC_ADDRESS", f"cannot listen on {address}: address in use or unavailable")


def _start_flight(settings: Settings, services: Services, loop: asyncio.AbstractEventLoop) -> QuarryFlightServer | None:
    """The Arrow Flight endpoint on QUARRY_FLIGHT_ADDRESS, or None when that is empty."""
    if not settings.flight_address:
        return None
    tls = None
    if settings.tls_cert_file is not None and settings.tls_key_file is not None:
        client_ca = settings.tls_client_ca_file.read_bytes() if settings.tls_client_ca_file is not None else None
        tls = FlightTls(settings.tls_cert_file.read_bytes(), settings.tls_key_file.read_bytes(), client_ca)
    try:
        return start_flight(settings.flight_address, services.tables, services.admission, loop, tls)
    except (OSError, pa.ArrowException) as exc:
        raise ConfigError("QUARRY_FLIGHT_ADDRESS", f"cannot listen on {settings.flight_address}: {exc}") from None


async def _stop_flight(flight_server: QuarryFlightServer, grace: float) -> None:
    """Stop the Flight endpoint, giving its streams `grace` seconds. Its shutdown waits for them, and their reads
    need this event loop, so it runs on a thread of its own (a daemon: one a stuck client holds past the grace
    must not keep the process alive, as a thread of the loop's executor would)."""
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()

    def shutdown() -> None:
        flight_server.shutdown()
        with contextlib.suppress(RuntimeError):  # the loop may be gone, after a grace that ran out
            loop.call_soon_threadsafe(stopped.set)

    threading.Thread(target=shutdown, name="flight-shutdown", daemon=True).start()
    try:
        await asyncio.wait_for(stopped.wait(), grace)
    except TimeoutError:
        log.warning("Flight streams still open after the grace period", extra={"grace_seconds": grace})


async def serve(settings: Settings, ready: asyncio.Event | None = None) -> None:
    """Run the server until a signal (or `stop` in tests) ends it."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    ensure_ports_free(settings)
    async with contextlib.AsyncExitStack() as stack:
        deps = await stack.enter_async_context(open_connections(settings))
        services = await stack.enter_async_context(open_services(deps))
        health = HealthReporter(deps.probe, QUARRY_SERVICES, settings.health_interval_seconds,
                                settings.health_failures)
        server = build_grpc_server(settings, deps, services, health)
        _bind(server, settings.grpc_address, server_credentials(settings))
        metrics.serve_metrics(settings.metrics_host, settings.metrics_port, "QUARRY_METRICS_PORT")
        await server.start()
        flight_server = _start_flight(settings, services, loop)
        await health.refresh()
        health.start()
        sampler = UploadStateSampler(services.db, max(5.0, settings.health_interval_seconds))
        sampler.start()
        log.info("serving", extra={"address": settings.grpc_address, "metrics_port": settings.metrics_port,
                                   "flight_address": settings.flight_address, "storage": deps.store.kind,
                                   "auth_mode": settings.auth_mode, "tls": settings.tls})
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("stopping", extra={"grace_seconds": settings.shutdown_grace_seconds})
        await health.stop()
        await sampler.stop()
        await server.stop(settings.shutdown_grace_seconds)
        if flight_server is not None:
            await _stop_flight(flight_server, settings.shutdown_grace_seconds)
        log.info("stopped")
