"""Blocking chunk readers over an object, for parsers running in a worker thread.

A local file is read on the calling thread (no hop at all); a remote object's async stream is pulled
chunk by chunk through the event loop, so the store is read at the pace of the parser, never ahead of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import BinaryIO

from server.model.objects import ChunkReader


class FileChunkReader(ChunkReader):
    """Chunks of an open local file."""

    def __init__(self, file: BinaryIO, chunk_bytes: int) -> None:
        self._file = file
        self._chunk_bytes = chunk_bytes

    def next_chunk(self) -> bytes:
        return self._file.read(self._chunk_bytes)

    def close(self) -> None:
        self._file.close()


async def _next(chunks: AsyncIterator[bytes]) -> bytes:
    return await anext(chunks, b"")


class LoopChunkReader(ChunkReader):
    """Chunks of a store's async stream, fetched through `loop` (call from a thread other than the loop's)."""

    def __init__(self, chunks: AsyncIterator[bytes], loop: asyncio.AbstractEventLoop) -> None:
        self._chunks = chunks
        self._loop = loop
        self._done = False

    def next_chunk(self) -> bytes:
        if self._done:
            return b""
        chunk = asyncio.run_coroutine_threadsafe(_next(self._chunks), self._loop).result()
        if not chunk:
            self._done = True
        return chunk

    def close(self) -> None:
        aclose = getattr(self._chunks, "aclose", None)
        if aclose is not None and not self._loop.is_closed():
            asyncio.run_coroutine_threadsafe(aclose(), self._loop).result()
