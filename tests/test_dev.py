"""`quarry dev`: the embedded stack comes up, keeps its data, refuses a second start, and cleans up."""

from __future__ import annotations

import asyncio
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import asyncpg
import psutil
import pytest

from server.listen_ports import free_port
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
    assert line.startswith("Quarry is serving on"), (line, process.stderr.read() if process.poll() else "")
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


def test_dev_stack_lifecycle(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    address = f"127.0.0.1:{free_port()}"
    env = clean_env(QUARRY_METRICS_PORT=str(free_port()), QUARRY_WORKER_METRICS_PORT=str(free_port()))

    first = start_dev(data_dir, address, env)
    try:
        line = wait_announced(first)
        assert address in line and str(data_dir) in line
        wait_serving(address, timeout=10)
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

    restarted = start_dev(data_dir, address, env)
    try:
        wait_announced(restarted)
        name = asyncio.run(sql(data_dir, "SELECT name FROM namespaces WHERE name = 'kept-across-restarts'"))
        assert name == "kept-across-restarts"
        started = everything_started_by(restarted, data_dir)
        restarted.send_signal(signal.SIGTERM)
        assert restarted.wait(60) == 0
        assert alive(started) == set()
    finally:
        if restarted.poll() is None:
            restarted.kill()
