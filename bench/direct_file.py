"""A file written the cheapest durable way, for the bench's bare references: bytes appended through two
page-aligned buffers, each full one written with O_DIRECT from a thread while the other fills, one fdatasync at
the end (as Quarry's part writer does). Where O_DIRECT is refused (tmpfs) it writes through the page cache."""

from __future__ import annotations

import asyncio
import mmap
import os
from pathlib import Path

MiB = 1 << 20


class DirectFile:
    """A new file at `path`, appended to with `append`, made durable by `finish`, closed by `close`."""

    def __init__(self, path: Path, buffer_bytes: int = 8 * MiB) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        try:
            self.fd = os.open(path, flags | getattr(os, "O_DIRECT", 0), 0o600)
        except OSError:  # a file system without direct I/O
            self.fd = os.open(path, flags, 0o600)
        self.size = buffer_bytes
        self.buffers = [mmap.mmap(-1, buffer_bytes) for _ in range(2)]  # page-aligned, as O_DIRECT needs
        self.turn = self.filled = self.written = 0
        self.pending: asyncio.Future[int] | None = None

    async def append(self, data: bytes | memoryview) -> None:
        """Copy `data` into the buffer, handing each full one to a thread (after the previous one landed)."""
        view = memoryview(data)
        while view:
            take = min(len(view), self.size - self.filled)
            self.buffers[self.turn][self.filled:self.filled + take] = view[:take]
            self.filled, view = self.filled + take, view[take:]
            if self.filled == self.size:
                if self.pending is not None:
                    await self.pending
                self.pending = asyncio.ensure_future(
                    asyncio.to_thread(os.pwrite, self.fd, self.buffers[self.turn], self.written))
                self.turn, self.filled, self.written = self.turn ^ 1, 0, self.written + self.size

    async def finish(self) -> int:
        """Write what is left (the bench's sizes are whole MiB: whole blocks) and fdatasync; the bytes written."""
        if self.pending is not None:
            await self.pending
        if self.filled:
            rest = memoryview(self.buffers[self.turn])[:self.filled]
            self.written += await asyncio.to_thread(os.pwrite, self.fd, rest, self.written)
            self.filled = 0
        await asyncio.to_thread(os.fdatasync, self.fd)
        return self.written

    def close(self) -> None:
        os.close(self.fd)
