"""Start a throwaway Quarry stack for benchmarks: Postgres, Redis, optionally moto's S3 server, servers, a worker.

`quarry_stack` is the whole stack on one store in one call (scripts/test_stack.py and the memory and Flight
benchmarks use it). `services` starts the shared parts only (Postgres, Redis, moto), so one benchmark run can put
several servers on them (`start_server`: one on the local store, one on S3) and issue tokens (`bootstrap`).
"""

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
        return peak_rss(self.server.pid)


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


@dataclass
class Services:
    """Postgres, Redis and (optionally) moto of one benchmark run, and the environment a server needs for them."""

    work: Path
    env: dict[str, str]
    s3_endpoint: str | None

    def server_env(self, store: str, address: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of a server (or worker) on `store` ("file" or "s3") listening on `address`."""
        env = dict(self.env, QUARRY_GRPC_ADDRESS=address)
        if store == "s3":
            assert self.s3_endpoint is not None, "services started without S3"
            env.update(QUARRY_STORAGE_URL=f"s3://{BUCKET}?endpoint={self.s3_endpoint}",
                       QUARRY_S3_ACCESS_KEY_ID="bench", QUARRY_S3_SECRET_ACCESS_KEY="bench",
                       AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
        else:
            env.update(QUARRY_STORAGE_URL=f"file://{self.work / 'objects'}")
        env.update(extra or {})
        return env


@contextlib.contextmanager
def services(with_s3: bool = False) -> Iterator[Services]:
    """Postgres and Redis (and moto's S3 server with the benchmark bucket), torn down afterwards."""
    with tempfile.TemporaryDirectory(prefix="quarry-bench-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        postgres = EmbeddedPostgres(work / "pg")
        postgres.start()
        stack.callback(postgres.stop)
        redis = EmbeddedRedis(work / "redis", persistent=False)
        redis.start()
        stack.callback(redis.stop)
        endpoint = stack.enter_context(moto_server(work)) if with_s3 else None
        env = {k: v for k, v in os.environ.items() if not k.startswith("QUARRY_")}
        env.update(QUARRY_DATABASE_URL=postgres.url, QUARRY_REDIS_URL=redis.url, QUARRY_METRICS_PORT="0",
                   QUARRY_WORKER_METRICS_PORT="0", QUARRY_LOG_LEVEL="WARNING")
        yield Services(work, env, endpoint)


@contextlib.contextmanager
def process(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A child process (its output in `log`), terminated (then killed) when the block ends."""
    with open(log, "ab") as output:
        child = subprocess.Popen(command, env=env, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL)
        try:
            yield child
        finally:
            child.terminate()
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


@contextlib.contextmanager
def start_server(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A Quarry server with `env`, SERVING when the block starts."""
    with process([sys.executable, "-m", "server"], env, log) as server:
        wait_serving(env["QUARRY_GRPC_ADDRESS"])
        yield server


def bootstrap(env: dict[str, str], principal: str = "bench") -> str:
    """The first operator token of the stack's database (`quarry admin bootstrap`; migrations applied)."""
    result = subprocess.run([sys.executable, "-m", "quarry.cli", "admin", "bootstrap", "--principal", principal],
                            env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"quarry admin bootstrap failed: {result.stderr.strip()}")
    return result.stdout.strip()


def peak_rss(pid: int) -> int:
    """A process's peak resident set size (VmHWM) since it started or since `reset_peak`, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def current_rss(pid: int) -> int:
    """A process's resident set size now (VmRSS), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime: fields 14 and 15


def reset_peak(pid: int) -> None:
    """Start a process's peak over from its current resident size (Linux: 5 written to clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@contextlib.contextmanager
def quarry_stack(store: str, extra_env: dict[str, str] | None = None) -> Iterator[Stack]:
    """The whole stack on `store` ("file" or "s3"), torn down afterwards."""
    with services(with_s3=store == "s3") as svc:
        address = f"127.0.0.1:{free_port()}"
        env = svc.server_env(store, address, extra_env)
        with start_server(env, svc.work / "server.log") as server:
            token = bootstrap(env)
            create_namespace(address, token, "bench")
            yield Stack(svc.work, address, server, env["QUARRY_STORAGE_URL"], svc.s3_endpoint, env, token)


def create_namespace(address: str, operator: str, namespace: str) -> None:
    """Have the operator make `namespace`."""
    from quarry.v1 import namespace_service_pb2 as npb
    from quarry.v1 import namespace_service_pb2_grpc as npb_grpc

    with grpc.insecure_channel(address) as channel:
        npb_grpc.NamespaceServiceStub(channel).CreateNamespace(npb.CreateNamespaceRequest(namespace_id=namespace),
                                                               metadata=(("authorization", f"Bearer {operator}"),),
                                                               timeout=30)
