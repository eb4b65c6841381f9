"""A remote object as a seekable, read-only file, for pyarrow running in a worker thread.

Readers such as pyarrow's Parquet reader seek to the footer, then read column chunks, often in small
pieces. Every read that misses fetches at least READ_AHEAD_BYTES and the last few blocks stay cached, so
those small reads do not each become a request to the store; a reader that knows which ranges it will need
can `prefetch` them, fetched concurrently from a remote store (one round trip instead of one per range).
The object is fetched with range reads through the event loop (one hop per fetch). A local store's file is
read by `local_reader.LocalFileReader` instead. `bytes_fetched` counts what was read from the store.
"""

from __future__ import annotations

import asyncio
import collections
import io
from collections.abc import Callable

from server.model.objects import ObjectStore, RandomReader

READ_AHEAD_BYTES = 256 << 10
CACHE_BYTES = 16 << 20

Fetch = Callable[[list[tuple[int, int]]], list[bytes]]


class RangeFile(RandomReader):
    """Read-only, seekable bytes of one object of known size, fetched by range with read-ahead."""

    def __init__(self, fetch: Fetch, size: int, *,
                 on_close: Callable[[], None] | None = None) -> None:
        """Read through `fetch([(offset, length), ...])`; `on_close` releases what `fetch` holds."""
        super().__init__()
        self._fetch = fetch
        self._size = size
        self._on_close = on_close
        self._blocks: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        self._cached_bytes = 0
        self._position = 0
        self.bytes_fetched = 0

    @classmethod
    def of_object(cls, store: ObjectStore, key: str, size: int, loop: asyncio.AbstractEventLoop) -> RangeFile:
        """The object at `key`, read by range from `store` through `loop` (call from a worker thread)."""

        async def read_ranges(ranges: list[tuple[int, int]]) -> list[bytes]:
            return list(await asyncio.gather(*(store.read_range(key, offset, length) for offset, length in ranges)))

        def fetch(ranges: list[tuple[int, int]]) -> list[bytes]:
            return asyncio.run_coroutine_threadsafe(read_ranges(ranges), loop).result()

        return cls(fetch, size)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise OSError(f"seek to {base + offset}, before the start")
        self._position = base + offset
        return self._position

    def _cached(self, position: int) -> tuple[int, bytes] | None:
        for start, block in reversed(self._blocks.items()):
            if start <= position < start + len(block):
                self._blocks.move_to_end(start)
                return start, block
        return None

    def _load(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        blocks = self._fetch(ranges)
        for (offset, length), block in zip(ranges, blocks, strict=True):
            if len(block) != length:
                raise OSError(f"the store returned {len(block)} bytes at {offset}; expected {length}")
            self.bytes_fetched += length
            if length <= CACHE_BYTES:
                self._blocks[offset] = block
                self._cached_bytes += length
        while self._cached_bytes > CACHE_BYTES:
            _, old = self._blocks.popitem(last=False)
            self._cached_bytes -= len(old)
        return blocks

    def _block(self, position: int, wanted: int) -> tuple[int, bytes]:
        """A cached block holding `position`, or a fresh one of at least `wanted` bytes starting there."""
        found = self._cached(position)
        if found is not None:
            return found
        length = min(max(wanted, READ_AHEAD_BYTES), self._size - position)
        return position, self._load([(position, length)])[0]

    def prefetch(self, ranges: list[tuple[int, int]]) -> None:
        """Fetch ranges that reads will soon need, all at once, into the cache."""
        wanted = [(offset, min(length, self._size - offset)) for offset, length in ranges
                  if 0 <= offset < self._size and length > 0 and self._cached(offset) is None]
        if wanted:
            self._load(wanted)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        target = memoryview(buffer).cast("B")
        wanted = min(len(target), self._size - self._position)
        done = 0
        while done < wanted:
            start, block = self._block(self._position, wanted - done)
            piece = memoryview(block)[self._position - start:self._position - start + wanted - done]
            target[done:done + len(piece)] = piece
            done += len(piece)
            self._position += len(piece)
        return done

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = self._size - self._position
        buffer = bytearray(max(0, min(size, self._size - self._position)))
        count = self.readinto(buffer)
        return bytes(buffer[:count])

    def readall(self) -> bytes:
        return self.read(-1)

    def close(self) -> None:
        if not self.closed:
            self._blocks.clear()
            if self._on_close is not None:
                self._on_close()
        super().close()
