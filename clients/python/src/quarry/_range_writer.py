"""Writing a download's ranges in a thread, while the next range is hashed, past the page cache where possible.

A durable download pays for the page cache twice: copying into it (the kernel allocates and zeroes its pages)
and flushing it at the fsync. Where the platform has O_DIRECT and the file system takes it, whole blocks go
from an aligned buffer straight to the device instead (a memcpy into the buffer is the only copy); what is
not whole blocks (the bytes before the first block boundary, the file's last bytes) goes through the
ordinary descriptor. Without O_DIRECT (or on a file system that refuses it, such as tmpfs) the ranges are
written through the ordinary descriptor, still in the thread.

Writes run one at a time, in the order given, in one thread: the file only ever grows at its end, so an
interrupted download leaves a prefix of the file. After a failed write no later one runs (it would leave a
hole before it), and the failure is raised by the next call here.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

__all__ = ["BLOCK", "RangeWriter"]

BLOCK = 4096  # the alignment O_DIRECT needs of memory, offsets and lengths on the file systems Quarry meets
DIRECT = getattr(os, "O_DIRECT", 0)  # Linux; 0 elsewhere: no direct writes


def _open_direct(path: Path) -> int:
    """A second descriptor of `path` that writes past the page cache, or -1 where there is none."""
    if not DIRECT:
        return -1
    try:
        return os.open(path, os.O_WRONLY | DIRECT | getattr(os, "O_CLOEXEC", 0))
    except OSError:  # EINVAL: the file system does not do direct I/O
        return -1


def _write_all(fd: int, data: memoryview, offset: int) -> None:
    """Every byte of `data` at `offset`: a short write is continued, a write that takes nothing fails."""
    while data:
        written = os.pwrite(fd, data, offset)
        if not written:
            raise OSError(errno.EIO, "the file system took none of the bytes written")
        data = data[written:]
        offset += written


class RangeWriter:
    """Writes ranges of one file at increasing offsets, each in the background, two at most in flight."""

    def __init__(self, path: Path, plain_fd: int, range_bytes: int) -> None:
        self.path = path
        self._plain = plain_fd
        self._direct = _open_direct(path)
        size = range_bytes + BLOCK
        self._buffers = [mmap.mmap(-1, size) for _ in range(2)] if self._direct >= 0 else []
        self._jobs: list[Future[None] | None] = [None, None]
        self._turn = 0
        self._failed: BaseException | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="quarry-write")

    @property
    def direct(self) -> bool:
        """Whether whole blocks bypass the page cache."""
        return self._direct >= 0

    def write(self, offset: int, chunks: Sequence[bytes]) -> None:
        """Queue `chunks`, to be written one after the other from `offset` (after the earlier ranges). Waits
        only for the write that last used the buffer this one takes, and raises its failure."""
        turn = self._turn
        self._turn ^= 1
        self._wait(turn)
        if not self.direct:
            self._jobs[turn] = self._pool.submit(self._write_plain, offset, list(chunks))
            return
        # The bytes sit in the buffer as they sit in the file's blocks: at `offset % BLOCK`, so where the file
        # reaches a block boundary the buffer does too (O_DIRECT needs both aligned).
        buffer = memoryview(self._buffers[turn])
        start = end = offset % BLOCK
        for chunk in chunks:  # chunks are at most one range long: the buffer holds them
            buffer[end:end + len(chunk)] = chunk
            end += len(chunk)
        self._jobs[turn] = self._pool.submit(self._write_direct, offset, buffer[start:end])

    def _wait(self, turn: int) -> None:
        job = self._jobs[turn]
        self._jobs[turn] = None
        if job is not None:
            job.result()

    def _write_plain(self, offset: int, chunks: Sequence[bytes | memoryview]) -> None:
        self._check()
        try:
            for chunk in chunks:
                _write_all(self._plain, memoryview(chunk), offset)
                offset += len(chunk)
        except BaseException as exc:
            self._failed = exc
            raise

    def _write_direct(self, offset: int, data: memoryview) -> None:
        self._check()
        if self._direct < 0:  # switched to the plain descriptor by an earlier write
            self._write_plain(offset, [data])
            return
        try:
            head = min(-offset % BLOCK, len(data))  # up to the first block boundary: through the page cache
            if head:
                _write_all(self._plain, data[:head], offset)
            whole = (len(data) - head) // BLOCK * BLOCK
            try:
                _write_all(self._direct, data[head:head + whole], offset + head)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                # A file system that opened the descriptor but refuses this write (its blocks are larger than
                # BLOCK): the plain descriptor from here on.
                os.close(self._direct)
                self._direct = -1
                _write_all(self._plain, data[head:head + whole], offset + head)
            if head + whole < len(data):  # the file's last bytes
                _write_all(self._plain, data[head + whole:], offset + head + whole)
        except BaseException as exc:
            self._failed = exc
            raise

    def _check(self) -> None:
        if self._failed is not None:
            raise OSError(errno.EIO, f"an earlier write to {self.path} failed: {self._failed}")

    def drain(self) -> None:
        """Wait until every queued write is done; raise the first failure."""
        first, second = self._turn, self._turn ^ 1  # the older job first
        self._wait(first)
        self._wait(second)

    def close(self) -> None:
        """Let the queued writes finish (their failures are left to the caller's own error), then let go."""
        try:
            self.drain()
        except Exception:  # noqa: S110  (the download already failed, or failed to hash, for its own reason)
            pass
        finally:
            self._pool.shutdown(wait=True)
            if self._direct >= 0:
                os.close(self._direct)
                self._direct = -1
            for buffer in self._buffers:
                with contextlib.suppress(BufferError):  # a view still held somewhere: the collector frees it
                    buffer.close()
            self._buffers = []
