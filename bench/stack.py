"""Start a throwaway Quarry stack for benchmarks: Postgres, Redis, optionally moto's S3 server, a server."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.embedded import EmbeddedPostgres, EmbeddedRedis
from server.listen_ports import free_port

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "bench"


@dataclass
class Stack:
    """What a benchmark talks to."""

    work: Path
    address: str
    server: subprocess.Popen[bytes]
    storage_url: str
    s3_endpoint: str | None
    env: dict[str, str]
    token: str  # an operator's, from `quarry admin bootstrap`
    namespace: str = "bench"  # made by that operator

    def server_peak_rss(self) -> int:
        """The server process's peak resident set size (VmHWM), in bytes."""
        for line in Path(f"/proc/{self.server.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmHWM")


def _wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        time.sleep(0.1)
    raise TimeoutError(f"port {port} did not open")


def wait_serving(address: str, timeout: float = 60) -> None:
    """Block until the server's health check says SERVING."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            with contextlib.suppress(grpc.RpcError):
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                    return
            time.sleep(0.1)
    raise TimeoutError(f"{address} never SERVING")


@contextlib.contextmanager
def moto_server(work: Path) -> Iterator[str]:
    """moto's standalone S3 server with the benchmark bucket."""
    port = free_port()
    log = open(work / "moto.log", "wb")  # noqa: SIM115
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_port(port)
        endpoint = f"http://127.0.0.1:{port}"
        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench", aws_secret_access_key="bench",
                     region_name="us-east-1").create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        process.terminate()
        process.wait(30)
        log.close()


@contextlib.contextmanager
def quarry_stack(store: str, extra_env: dict[str, str] | None = None) -> Iterator[Stack]:
    """The whole stack on `store` ("file" or "s3"), torn down afterwards."""
    with tempfile.TemporaryDirectory(prefix="quarry-bench-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        postgres = EmbeddedPostgres(work / "pg")
        postgres.start()
        stack.callback(postgres.stop)
        redis = EmbeddedRedis(work / "redis", persistent=False)
        redis.start()
        stack.callback(redis.stop)
        env = {k: v for k, v in os.environ.items() if not k.startswith("QUARRY_")}
        endpoint = None
        if store == "s3":
            endpoint = stack.enter_context(moto_server(work))
            storage = f"s3://{BUCKET}?endpoint={endpoint}"
            env.update(QUARRY_S3_ACCESS_KEY_ID="bench", QUARRY_S3_SECRET_ACCESS_KEY="bench",
                       AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
        else:
            storage = f"file://{work / 'objects'}"
        address = f"127.0.0.1:{free_port()}"
        env.update(QUARRY_DATABASE_URL=postgres.url, QUARRY_REDIS_URL=redis.url, QUARRY_STORAGE_URL=storage,
                   QUARRY_GRPC_ADDRESS=address, QUARRY_METRICS_PORT="0", QUARRY_LOG_LEVEL="WARNING")
        env.update(extra_env or {})
        storage = env["QUARRY_STORAGE_URL"]
        log = open(work / "server.log", "wb")  # noqa: SIM115
        server = subprocess.Popen([sys.executable, "-m", "server"], env=env, cwd=ROOT, stdout=log,
                                  stderr=subprocess.STDOUT)

        def stop_server() -> None:
            server.terminate()
            server.wait(30)
            log.close()

        stack.callback(stop_server)
        wait_serving(address)
        token = operator_token(env)
        create_namespace(address, token, "bench")
        yield Stack(work, address, server, storage, endpoint, env, token)


def operator_token(env: dict[str, str]) -> str:
    """The first operator token of the stack's database (`quarry admin bootstrap`)."""
    return subprocess.run([sys.executable, "-m", "quarry.cli", "admin", "bootstrap"], env=env, cwd=ROOT,
                          capture_output=True, text=True, check=True).stdout.strip()


def create_namespace(address: str, operator: str, namespace: str) -> None:
    """Have the operator make `namespace`."""
    from quarry.v1 import namespace_service_pb2 as npb
    from quarry.v1 import namespace_service_pb2_grpc as npb_grpc

    with grpc.insecure_channel(address) as channel:
        npb_grpc.NamespaceServiceStub(channel).CreateNamespace(npb.CreateNamespaceRequest(namespace_id=namespace),
                                                               metadata=(("authorization", f"Bearer {operator}"),),
                                                               timeout=30)
