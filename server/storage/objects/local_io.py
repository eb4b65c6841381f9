"""File-system helpers shared by the local store and its part writer.

Every byte the local store writes goes through `FileCalls` (open, pwrite, fdatasync, close): the one seam
where tests inject the faults a real file system shows only now and then, a short write (part of the bytes
accepted, no error: tmpfs does it when it fills up) and ENOSPC. `write_all` loops over short writes and fails
on a write that makes no progress, so no caller can mistake part of its bytes for all of them.

OSError is translated here, at the store's boundary, into Unavailable as the S3 store does (STORE_FULL for
a full file system, STORE_UNAVAILABLE otherwise): untranslated, an OSError raised inside a database
transaction would reach the client as "database unavailable".
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from server.model.errors import Unavailable

_FULL = (errno.ENOSPC, errno.EDQUOT)


class FileCalls:
    """The system calls the local store writes through."""

    def open(self, path: Path, flags: int, mode: int = 0o644) -> int:
        return os.open(path, flags, mode)

    def pwrite(self, fd: int, data: memoryview, offset: int) -> int:
        """Write some of `data` at `offset`; return how many bytes were written (maybe fewer than asked)."""
        return os.pwrite(fd, data, offset)

    def fdatasync(self, fd: int) -> None:
        os.fdatasync(fd)

    def close(self, fd: int) -> None:
        os.close(fd)


SYSTEM = FileCalls()


def write_all(calls: FileCalls, fd: int, data: bytes | bytearray | memoryview, offset: int) -> int:
    """Write every byte of `data` at `offset`, continuing after short writes; return the count written.

    A write that makes no progress raises ENOSPC (the file system took nothing and gave no reason: it is full).
    """
    view = memoryview(data).cast("B")
    written = 0
    while written < len(view):
        count = calls.pwrite(fd, view[written:], offset + written)
        if count <= 0:
            raise OSError(errno.ENOSPC, f"no byte written at offset {offset + written} "
                                        f"({len(view) - written} bytes left)")
        written += count
    return written


@contextlib.contextmanager
def boundary(what: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        detail = f"{type(exc).__name__}: {exc.strerror or exc}"
        if exc.errno in _FULL:
            raise Unavailable(f"object store is full on {what}: {detail}; the bytes were not kept",
                              reason="STORE_FULL", retry_after=5.0) from exc
        raise Unavailable(f"object store failed on {what}: {detail}", reason="STORE_UNAVAILABLE") from exc


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
