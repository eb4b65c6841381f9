"""Prometheus metrics of the server and the worker, served over HTTP on their own ports (with /health)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest

from server.model.errors import ConfigError

# Whether the process is serving, and if not, why (one line per dependency down).
HealthCheck = Callable[[], tuple[bool, str]]

GRPC_HANDLED = Counter("quarry_grpc_handled_total", "gRPC calls completed", ["method", "code"])
GRPC_LATENCY = Histogram("quarry_grpc_handling_seconds", "gRPC call duration", ["method"],
                         buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
READ_BYTES = Counter("quarry_read_bytes_total", "Bytes of version files ReadFile served", ["protocol"])
FLIGHT_ROWS = Counter("quarry_flight_rows_total", "Rows Arrow Flight DoGet streamed")
FLIGHT_BYTES = Counter("quarry_flight_bytes_total", "Arrow bytes (in memory) of the batches DoGet streamed")
AUTH_DENIED = Counter("quarry_auth_denied_total", "Calls refused: no valid token, no grant, a role too low, or a rate "
                      "limit", ["reason"])
DEPENDENCY_UP = Gauge("quarry_dependency_up", "1 when a dependency answers its health probe", ["dependency"])

UPLOAD_BYTES = Counter("quarry_upload_bytes_received_total", "Upload bytes received from clients")
UPLOAD_PARTS = Counter("quarry_upload_parts_written_total", "Upload parts durably written", ["store"])
UPLOAD_PART_SECONDS = Histogram("quarry_upload_part_write_seconds", "Time to write one part to the store",
                                ["store"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
UPLOAD_STREAMS = Gauge("quarry_upload_active_streams", "Upload streams in progress")
UPLOAD_TRANSITIONS = Counter("quarry_upload_transitions_total", "Upload state changes", ["state"])
UPLOADS_BY_STATE = Gauge("quarry_uploads", "Uploads by state (sampled)", ["state"])

BUFFER_LIMIT = Gauge("quarry_buffer_budget_bytes", "Bytes the server may hold for streams (QUARRY_MAX_BUFFER_BYTES)")
BUFFER_HELD = Gauge("quarry_buffer_held_bytes", "Bytes granted to streams now")
BUFFER_REFUSALS = Counter("quarry_buffer_refusals_total", "Streams refused because the buffer budget was spent")
IDLE_STREAMS = Counter("quarry_idle_streams_ended_total", "Upload streams ended because the client sent nothing")

JOBS = Counter("quarry_jobs_total", "Jobs run by the worker", ["job", "outcome"])
JOB_SECONDS = Histogram("quarry_job_seconds", "Job duration", ["job"],
                        buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600))
VALIDATED_BYTES = Counter("quarry_validated_bytes_total", "Bytes read by validation")


WORKER_SERVING = Gauge("quarry_worker_serving", "1 while the worker's dependencies answer and it takes jobs")


def serve_metrics(host: str, port: int, variable: str, health: HealthCheck | None = None) -> None:
    """Serve /metrics on host:port (port 0 disables), and /health when `health` is given: 200 "SERVING", or 503
    "NOT_SERVING" and why. ConfigError naming `variable` when the port is taken."""
    if port == 0:
        return
    try:
        server = ThreadingHTTPServer((host, port), _handler(health))
    except OSError as exc:
        raise ConfigError(variable, f"cannot listen on port {port}: {exc.strerror or exc}") from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()


def _handler(health: HealthCheck | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            if self.path.split("?", 1)[0] == "/health" and health is not None:
                serving, why = health()
                body = ("SERVING\n" if serving else f"NOT_SERVING\n{why}\n").encode()
                self._send(200 if serving else 503, "text/plain; charset=utf-8", body)
            else:
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY))

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the signature http.server uses
            return  # scrapes every few seconds are not worth a log line

    return Handler
