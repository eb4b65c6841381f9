"""Helpers for the SDK and CLI tests: the CLI as a subprocess, fresh namespaces, and a proxy that breaks
connections."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import quarry

from tests.support import NAME, ROOT, clean_env, create_namespace, issue_token, registered_servers, server_operator


def new_namespace() -> str:
    """A namespace name of the test's own."""
    return f"t-{uuid.uuid4().hex[:12]}"


def provision(address: str, namespace: str | None = None, role: str = "admin") -> tuple[str, str]:
    """A namespace on the server at `address` (created by its operator when new) and a token with `role` in it."""
    namespace = namespace or new_namespace()
    operator = server_operator(address)
    create_namespace(address, operator, namespace)
    return namespace, issue_token(address, operator, {namespace: role})


@dataclass
class Cli:
    """Runs `python -m quarry.cli` against one server, in one namespace, with its own cache directory and (unless
    given one) an admin token of that namespace, made when the server is one the tests started."""

    address: str
    namespace: str
    cache_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    options: tuple[str, ...] = ()  # global options, before the command
    token: str | None = None

    def __post_init__(self) -> None:
        if self.token is None and self.address in registered_servers() and NAME.match(self.namespace):
            self.namespace, self.token = provision(self.address, self.namespace)

    def env(self) -> dict[str, str]:
        values = {"QUARRY_ADDRESS": self.address, "QUARRY_NAMESPACE": self.namespace,
                  "QUARRY_CACHE_DIR": str(self.cache_dir), **({"QUARRY_TOKEN": self.token} if self.token else {})}
        return clean_env(**{**values, **self.extra_env})

    def popen(self, *args: str, **options: Any) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "quarry.cli", *self.options, *args], env=self.env(), cwd=ROOT,
                                text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **options)

    def run(self, *args: str, timeout: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "quarry.cli", *self.options, *args], env=self.env(),
                              cwd=cwd or ROOT, text=True, capture_output=True, timeout=timeout)

    def json(self, *args: str, timeout: float = 120) -> Any:
        """Run with --json and return the parsed output; fail with the stderr when the command failed."""
        result = self.run(*args, "--json", timeout=timeout)
        assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}"
        return json.loads(result.stdout)

    def client(self) -> quarry.Client:
        return quarry.Client(self.address, namespace=self.namespace, token=self.token, cache_dir=self.cache_dir)


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, status: str | None = None) -> str:
    """The command failed with `code` and said why in one line (no traceback); return that line."""
    assert result.returncode == code, f"exit {result.returncode}, stderr: {result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("quarry: "), lines[0]
    if status is not None:
        assert lines[0].startswith(f"quarry: {status}: "), lines[0]
    return lines[0]


def write_random_file(path: Path, size: int, block: int = 16 << 20) -> str:
    """Write `size` random bytes to `path` and return their sha256."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "wb") as file:
        left = size
        while left:
            data = os.urandom(min(block, left))
            digest.update(data)
            file.write(data)
            left -= len(data)
    return digest.hexdigest()


class BreakingProxy:
    """A TCP proxy in front of the server that cuts every connection once `budget` bytes went upstream (or,
    with `downstream`, came back from the server), `breaks` times; afterwards it forwards faithfully. For
    broken-connection tests we cannot cause for real."""

    def __init__(self, target: str, budget: int, breaks: int = 1, *, downstream: bool = False) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.budget = budget
        self.breaks = breaks
        self.downstream = downstream
        self.cuts = 0
        self._counted = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        try:
            while True:
                data = source.recv(1 << 16)
                if not data:
                    break
                if upstream != self.downstream and self._count(len(data)):
                    self.cut()
                    return
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _count(self, nbytes: int) -> bool:
        with self._lock:
            self._counted += nbytes
            if self.cuts < self.breaks and self._counted >= self.budget:
                self.cuts += 1
                self._counted = 0
                return True
        return False

    def cut(self) -> None:
        """Drop every open connection."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            except OSError:
                pass

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.cut()
