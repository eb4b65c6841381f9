"""`quarry dev`: the whole system on one machine, with nothing installed beforehand.

Starts Postgres and Redis (data in the data directory, so it survives a restart), a local object store,
applies migrations, then a server and a worker as child processes. Prints one line when the server is
SERVING.

It always runs with tokens. On the first start it issues an operator token and writes it (mode 0600) to
`<data dir>/credentials`, and to the user's credentials file (QUARRY_CREDENTIALS, default
~/.config/quarry/credentials) unless the user wrote that file themselves, so `quarry` commands in another
shell just work. On Ctrl-C (or SIGTERM) it stops the server and worker gracefully, then Redis, then Postgres,
and leaves no process behind. A second `quarry dev` on the same data directory fails at once.
"""

from __future__ import annotations

import asyncio
import fcntl
import getpass
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from server.embedded.postgres import EmbeddedPostgres
from server.embedded.process import die_with_parent, log_tail, stop_process
from server.embedded.redis import EmbeddedRedis
from server.listen_ports import ensure_ports_free
from server.model.errors import ConfigError
from server.settings import Settings

READY_TIMEOUT = 60.0


@contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the data directory; ConfigError if another `quarry dev` holds it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    lock_path = data_dir / "quarry-dev.lock"
    handle: IO[str] = open(lock_path, "a+")  # noqa: SIM115 - held for the whole run
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "unknown"
        handle.close()
        raise ConfigError("QUARRY_DATA_DIR", f"{data_dir} is in use by another `quarry dev` (pid {owner})") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    try:
        yield
    finally:
        handle.close()


def _migrate(url: str, timeout: float) -> None:
    from server.storage import db
    from server.storage.migrate import migrate

    async def run() -> None:
        connection = await db.connect(url, timeout)
        try:
            await migrate(connection)
        finally:
            await connection.close()

    asyncio.run(run())


def _credentials(settings: Settings, database_url: str, data_dir: Path) -> Path:
    """The data directory's credentials file, bootstrapping the operator token on the first start; the user's
    credentials file is kept in step with it."""
    from server.bootstrap import (
        WRITTEN_BY_DEV,
        bootstrap_operator,
        credentials_text,
        ensure_user_credentials,
        read_token,
        user_credentials_path,
        write_credentials,
    )
    from server.model.errors import FailedPrecondition

    path = data_dir / "credentials"
    address = _client_address(settings.grpc_address)
    comment = f"Quarry credentials, {WRITTEN_BY_DEV} for {address} (data directory {data_dir})"
    kept = read_token(path)
    if kept is not None:
        if credentials_text(kept, comment, address) != path.read_text():
            write_credentials(path, credentials_text(kept, comment, address))  # started on another address
    else:
        try:
            issued = asyncio.run(bootstrap_operator(settings.model_copy(update={"database_url": database_url}),
                                                    _principal()))
        except FailedPrecondition:
            raise ConfigError("QUARRY_DATA_DIR", f"{path} is missing but the database in {data_dir} has an operator "
                                                 "token already; restore the file, or start from an empty data "
                                                 "directory") from None
        write_credentials(path, credentials_text(issued.secret, comment, address))
    ensure_user_credentials(path, user_credentials_path())
    return path


def _client_address(listen: str) -> str:
    """Where a client on this machine reaches a server listening on `listen` (every interface: loopback)."""
    host, _, port = listen.rpartition(":")
    loopback = {"0.0.0.0": "127.0.0.1", "*": "127.0.0.1", "": "127.0.0.1", "[::]": "[::1]"}
    return f"{loopback.get(host, host)}:{port}"


def _principal() -> str:
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        return "operator"
    return name if name and name.replace("-", "").replace("_", "").replace(".", "").isalnum() else "operator"


def _spawn(module: str, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log = open(log_path, "ab")  # noqa: SIM115 - the child owns it
    try:
        return subprocess.Popen([sys.executable, "-m", module], env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent)
    finally:
        log.close()


def _serving(address: str) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    try:
        with grpc.insecure_channel(address) as channel:
            response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
            return bool(response.status == health_pb2.HealthCheckResponse.SERVING)
    except grpc.RpcError:
        return False


def run_dev(settings: Settings) -> int:
    """Run the embedded stack until Ctrl-C; return the exit status."""
    data_dir = settings.data_dir.expanduser().resolve()
    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    with data_dir_lock(data_dir):
        ensure_ports_free(settings, worker_metrics=True)
        logs = data_dir / "logs"
        logs.mkdir(exist_ok=True)
        previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        postgres = EmbeddedPostgres(data_dir / "postgres")
        redis = EmbeddedRedis(data_dir / "redis")
        children: dict[str, subprocess.Popen[bytes]] = {}
        try:
            database_url = postgres.start()
            redis_url = redis.start()
            _migrate(database_url, settings.startup_timeout_seconds)
            credentials = _credentials(settings, database_url, data_dir)
            env = dict(os.environ)
            env.update({
                "QUARRY_DATABASE_URL": database_url,
                "QUARRY_REDIS_URL": redis_url,
                "QUARRY_STORAGE_URL": f"file://{data_dir / 'objects'}",
                "QUARRY_GRPC_ADDRESS": settings.grpc_address,
                "QUARRY_DATA_DIR": str(data_dir),
                "QUARRY_AUTH_MODE": "tokens",
            })
            children["server"] = _spawn("server", env, logs / "server.log")
            children["worker"] = _spawn("workers", env, logs / "worker.log")
            deadline = time.monotonic() + READY_TIMEOUT
            announced = False
            while not stopping:
                for name, child in children.items():
                    if child.poll() is not None:
                        print(f"quarry: the {name} exited with status {child.returncode}; last lines of "
                              f"{logs / (name + '.log')}:\n{log_tail(logs / (name + '.log'))}", file=sys.stderr)
                        return 1
                if not announced:
                    if _serving(settings.grpc_address):
                        metrics = f"http://{settings.metrics_host}:{settings.metrics_port}/metrics"
                        print(f"Quarry is serving on {settings.grpc_address} (data {data_dir}, metrics {metrics}, "
                              f"logs {logs}, credentials {credentials}); press Ctrl-C to stop", flush=True)
                        announced = True
                    elif time.monotonic() > deadline:
                        print(f"quarry: the server was not SERVING after {READY_TIMEOUT:.0f}s; see {logs}",
                              file=sys.stderr)
                        return 1
                time.sleep(0.2)
            return 0
        finally:
            grace = settings.shutdown_grace_seconds + 5
            for child in children.values():
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            for child in children.values():
                stop_process(child, grace)
            redis.stop()
            postgres.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
