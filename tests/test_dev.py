"""`quarry dev`: the embedded stack comes up, keeps its data, refuses a second start, and cleans up."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import signal
import stat
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import asyncpg
import grpc
import psutil
import pytest
from quarry.v1 import namespace_service_pb2 as npb
from quarry.v1 import namespace_service_pb2_grpc as npb_grpc

from server.listen_ports import free_port, free_ports
from tests.support import ROOT, clean_env, wait_serving

pytestmark = pytest.mark.slow


def start_dev(data_dir: Path, address: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "quarry.cli", "dev", "--data-dir", str(data_dir),
                             "--address", address], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_announced(process: subprocess.Popen[str], timeout: float = 90) -> str:
    """The first line `quarry dev` prints, which must come within `timeout`. The read happens in a thread: a
    readline here would block for as long as the process stays silent, and a deadline checked after it would
    never fire."""
    stdout = process.stdout
    assert stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"quarry dev announced nothing within {timeout}s") from None
    if not line.startswith("Quarry is serving on"):
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)  # stdout closed: it is exiting; its stderr says why
        raise AssertionError(f"no announcement: {line!r}; exit {process.poll()}; stderr: "
                             f"{process.stderr.read() if process.poll() is not None else ''}")  # type: ignore
    return line


def everything_started_by(process: subprocess.Popen[str], data_dir: Path) -> set[int]:
    pids = {p.pid for p in psutil.Process(process.pid).children(recursive=True)}
    postmaster = (data_dir / "postgres" / "postmaster.pid").read_text().split()[0]
    pids.add(int(postmaster))
    pids.add(int((data_dir / "redis" / "redis.pid").read_text().split()[0]))
    return pids


def alive(pids: set[int]) -> set[int]:
    living = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                living.add(pid)
        except psutil.NoSuchProcess:
            pass
    return living


async def sql(data_dir: Path, query: str) -> object:
    connection = await asyncpg.connect(f"postgresql://postgres@/postgres?host={data_dir / 'postgres'}")
    try:
        return await connection.fetchval(query)
    finally:
        await connection.close()


def namespaces_seen_with(address: str, credentials: Path) -> list[str]:
    """The namespaces the token in a credentials file lists (it works, or this raises)."""
    token = tomllib.loads(credentials.read_text())["token"]
    with grpc.insecure_channel(address) as channel:
        listed = npb_grpc.NamespaceServiceStub(channel).ListNamespaces(
            npb.ListNamespacesRequest(), metadata=(("authorization", f"Bearer {token}"),), timeout=10)
    return [n.name for n in listed.namespaces]


def test_dev_stack_lifecycle(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port, metrics_port, worker_metrics_port = free_ports(3)
    address = f"127.0.0.1:{port}"
    user_credentials = tmp_path / "home" / "quarry" / "credentials"
    # Client-side variables in the shell never stop `quarry dev` (nor the server it starts).
    env = clean_env(QUARRY_METRICS_PORT=str(metrics_port), QUARRY_WORKER_METRICS_PORT=str(worker_metrics_port),
                    QUARRY_CREDENTIALS=str(user_credentials), QUARRY_TOKEN="qk_0123456789abcdef_" + "x" * 43,
                    QUARRY_ADDRESS="127.0.0.1:1", QUARRY_NAMESPACE="elsewhere")

    first = start_dev(data_dir, address, env)
    try:
        line = wait_announced(first)
        assert address in line and str(data_dir) in line and str(data_dir / "credentials") in line
        wait_serving(address, timeout=10)
        # The first start issued an operator token, into the data directory and the user's credentials file
        # (both readable by the owner only), and made the default namespace.
        credentials = data_dir / "credentials"
        assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
        assert stat.S_IMODE(user_credentials.stat().st_mode) == 0o600
        assert user_credentials.read_text() == credentials.read_text()
        assert "namespaces/default" in namespaces_seen_with(address, user_credentials)
        issued = credentials.read_text()
        started = everything_started_by(first, data_dir)
        assert len(started) >= 4  # server, worker, postgres, redis
        asyncio.run(sql(data_dir, "INSERT INTO namespaces (name) VALUES ('kept-across-restarts') RETURNING id"))

        # A second start on the same data directory fails at once, naming the problem.
        began = time.monotonic()
        second = subprocess.run([sys.executable, "-m", "quarry.cli", "dev", "--data-dir", str(data_dir),
                                 "--address", f"127.0.0.1:{free_port()}"], env=env, cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        assert time.monotonic() - began < 15
        assert second.stderr.strip().startswith("quarry: QUARRY_DATA_DIR:")
        assert "in use by another" in second.stderr
        wait_serving(address, timeout=5)  # the first one is unharmed

        first.send_signal(signal.SIGINT)  # what Ctrl-C delivers
        assert first.wait(60) == 0
        assert alive(started) == set(), "processes left behind after Ctrl-C"
    finally:
        if first.poll() is None:
            first.kill()

    # A credentials file the user wrote is theirs: `quarry dev` leaves it alone.
    user_credentials.write_text('token = "qk_fedcba9876543210_' + "u" * 43 + '"\n')
    restarted = start_dev(data_dir, address, env)
    try:
        wait_announced(restarted)
        name = asyncio.run(sql(data_dir, "SELECT name FROM namespaces WHERE name = 'kept-across-restarts'"))
        assert name == "kept-across-restarts"
        assert (data_dir / "credentials").read_text() == issued  # no second bootstrap
        assert "u" * 43 in user_credentials.read_text()
        assert asyncio.run(sql(data_dir, "SELECT count(*) FROM tokens WHERE operator")) == 1
        started = everything_started_by(restarted, data_dir)
        restarted.send_signal(signal.SIGTERM)
        assert restarted.wait(60) == 0
        assert alive(started) == set()
    finally:
        if restarted.poll() is None:
            restarted.kill()


def test_the_users_credentials_follow_the_dev_data_directory(tmp_path: Path) -> None:
    from server.bootstrap import WRITTEN_BY_DEV, credentials_text, ensure_user_credentials, write_credentials

    data, user = tmp_path / "data" / "credentials", tmp_path / "user" / "credentials"
    write_credentials(data, credentials_text("qk_0000000000000001_" + "a" * 43, f"Quarry, {WRITTEN_BY_DEV}"))
    assert ensure_user_credentials(data, user) == user and user.read_text() == data.read_text()
    assert ensure_user_credentials(data, user) is None  # already the same
    # A new data directory (the old one deleted): the file an earlier `quarry dev` wrote follows it...
    write_credentials(data, credentials_text("qk_0000000000000002_" + "b" * 43, f"Quarry, {WRITTEN_BY_DEV}"))
    assert ensure_user_credentials(data, user) == user and "b" * 43 in user.read_text()
    # ...but a file the user wrote is never replaced.
    user.write_text('token = "qk_0000000000000003_' + "c" * 43 + '"\n')
    assert ensure_user_credentials(data, user) is None and "c" * 43 in user.read_text()
    assert stat.S_IMODE(data.stat().st_mode) == 0o600
