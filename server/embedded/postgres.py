"""A real Postgres server from the `pgserver` wheel's binaries, on a Unix socket, in its own session.

We drive `initdb`/`pg_ctl` ourselves (rather than `pgserver.get_server`) to start the server in a new
session: a Ctrl-C in the terminal then reaches only `quarry dev`, which stops the server last, after the
processes that use it. As root, Postgres refuses to run, so it runs as the `pgserver` account, as pgserver does.
"""

from __future__ import annotations

import os
import platform
import subprocess
import warnings
from pathlib import Path
from urllib.parse import quote

with warnings.catch_warnings():
    # pgserver asks platformdirs for a runtime directory at import; we never use it.
    warnings.simplefilter("ignore")
    import pgserver
from pgserver.utils import (
    ensure_folder_permissions,
    ensure_prefix_permissions,
    ensure_user_exists,
    find_suitable_socket_dir,
)

from server.embedded.process import chown_to, log_tail

SYSTEM_USER = "pgserver"
BIN = Path(pgserver.__file__).parent / "pginstall" / "bin"


class EmbeddedPostgres:
    """A Postgres cluster in `pgdata`, listening only on a Unix socket."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata.resolve()
        self.user: str | None = SYSTEM_USER if platform.system() == "Linux" and os.geteuid() == 0 else None
        self.socket_dir: Path | None = None

    @property
    def url(self) -> str:
        """asyncpg DSN of the running server."""
        assert self.socket_dir is not None, "not started"
        return f"postgresql://postgres@/postgres?host={quote(str(self.socket_dir))}"

    def _run(self, tool: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / tool), *args], user=self.user, capture_output=True, text=True,
                              timeout=timeout, start_new_session=True, stdin=subprocess.DEVNULL)

    def _prepare(self) -> None:
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            ensure_user_exists(self.user)
            ensure_prefix_permissions(self.pgdata)
            ensure_prefix_permissions(BIN)
            ensure_folder_permissions(BIN, 0o055)
            ensure_folder_permissions(BIN.parent / "lib", 0o044)
            chown_to(self.pgdata, self.user)
        if not (self.pgdata / "PG_VERSION").exists():
            done = self._run("initdb", "-D", str(self.pgdata), "--auth=trust", "--encoding=utf8", "-U", "postgres")
            if done.returncode != 0:
                raise RuntimeError(f"initdb failed: {done.stderr.strip() or done.stdout.strip()}")

    def is_running(self) -> bool:
        """Whether a postmaster is running on this data directory."""
        return self._run("pg_ctl", "-D", str(self.pgdata), "status").returncode == 0

    def start(self) -> str:
        """Start (initialising the cluster on first use); return the DSN."""
        self._prepare()
        if self.is_running():
            self.stop()  # left behind by a supervisor that was killed: restart it under our control
        self.socket_dir = find_suitable_socket_dir(self.pgdata, Path("/tmp/quarry-pg"))
        if self.user is not None:
            chown_to(self.socket_dir, self.user)
        options = f"-h '' -k {self.socket_dir} -c fsync=on -c max_connections=200"
        done = self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60", "-o", options,
                         "-l", str(self.pgdata / "server.log"), "start")
        if done.returncode != 0:
            tail = log_tail(self.pgdata / "server.log", 5, " | ")
            raise RuntimeError(f"postgres did not start: {done.stderr.strip()} {tail}")
        return self.url

    def stop(self) -> None:
        """Fast shutdown (rolls back open transactions, keeps committed data)."""
        self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60", "-m", "fast", "stop")
