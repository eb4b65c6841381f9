"""TCP port helpers: is a port free, pick a free one."""

from __future__ import annotations

import socket

from server.model.errors import ConfigError
from server.settings import Settings


def port_is_free(host: str, port: int) -> bool:
    """Whether a TCP port can be bound on host right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As the gRPC and HTTP servers do: a port in TIME_WAIT is free, one with a listener is not.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` different TCP ports that were free a moment ago.

    Every probe stays bound until all are picked: picked one at a time, the kernel may hand out the same port twice.
    """
    probes = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for probe in probes:
            probe.bind((host, 0))
        return [int(probe.getsockname()[1]) for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def listen_host(address: str) -> str:
    """The host part of a `host:port` listening address, as a socket binds it (`*` or none: every interface)."""
    host = address.rpartition(":")[0].strip("[]")
    return "0.0.0.0" if host in ("", "*") else host


def ensure_ports_free(settings: Settings, *, worker_metrics: bool = False) -> None:
    """Refuse busy listening ports up front, naming the variable (gRPC, Flight, metrics, worker metrics)."""
    host, port = listen_host(settings.grpc_address), settings.grpc_address.rpartition(":")[2]
    if not port_is_free(host, int(port)):
        raise ConfigError("QUARRY_GRPC_ADDRESS", f"cannot listen on {settings.grpc_address}: address already in use")
    if settings.flight_address:
        flight_host, flight_port = listen_host(settings.flight_address), settings.flight_address.rpartition(":")[2]
        if not port_is_free(flight_host, int(flight_port)):
            raise ConfigError("QUARRY_FLIGHT_ADDRESS", f"cannot listen on {settings.flight_address}: address "
                                                       "already in use")
    checks = [("QUARRY_METRICS_PORT", settings.metrics_port)]
    if worker_metrics:
        checks.append(("QUARRY_WORKER_METRICS_PORT", settings.worker_metrics_port))
    for variable, value in checks:
        if value and not port_is_free(settings.metrics_host, value):
            raise ConfigError(variable, f"cannot listen on port {value}: address already in use")
