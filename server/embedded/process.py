"""Helpers for processes the embedded stack starts."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from pathlib import Path

import psutil

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """preexec_fn: ask Linux to SIGTERM this child when its parent dies, so a killed supervisor leaves no orphans."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def stop_process(process: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM, wait up to `timeout`, then SIGKILL; return the exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


def kill_stale(pid_file: Path, name_hint: str) -> None:
    """Kill a process left running by a supervisor that died, identified by its pid file."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return
    try:
        process = psutil.Process(pid)
        if name_hint in " ".join(process.cmdline()):
            process.terminate()
            try:
                process.wait(5)
            except psutil.TimeoutExpired:
                process.kill()
    except psutil.Error:
        pass
    pid_file.unlink(missing_ok=True)


def log_tail(path: Path, lines: int = 8, sep: str = "\n") -> str:
    """The last `lines` lines of a log file (read from its end only), joined by `sep`; "" when unreadable."""
    try:
        with open(path, "rb") as log:
            log.seek(max(0, log.seek(0, 2) - 64 * 1024))
            return sep.join(log.read().decode(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def chown_to(path: Path, user: str | None) -> None:
    """Give `path` to `user` (when running as root and handing work to an unprivileged account)."""
    if user is None:
        return
    import pwd

    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
