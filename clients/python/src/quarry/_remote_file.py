"""A file of a version as a seekable, read-only binary file, fetched by ranged ReadFile calls.

Readers such as pyarrow seek to a Parquet footer, then read the column chunks they need, sometimes in small
pieces. Bytes are fetched in whole blocks, kept in a small least-recently-used cache, so small reads near
each other cost one call; a read that continues where the previous one ended (a sequential reader: CSV,
JSON Lines, a copy) fetches ahead, doubling up to READ_AHEAD_BYTES; a read larger than the cache goes
straight through. `bytes_fetched` counts what was transferred.

`fetch(offset, length)` does the I/O and must return exactly `length` bytes (fewer only at the end of the
file); it may be called from any thread (pyarrow reads on its own), so the cache sits behind a lock.
"""

from __future__ import annotations

import collections
import io
import threading
from collections.abc import Callable

__all__ = ["BLOCK_BYTES", "CACHE_BLOCKS", "READ_AHEAD_BYTES", "RemoteFile"]

BLOCK_BYTES = 64 << 10
CACHE_BLOCKS = 256  # 16 MiB
READ_AHEAD_BYTES = 4 << 20

Fetch = Callable[[int, int], bytes]


class RemoteFile(io.RawIOBase):
    """Read-only, seekable bytes of one file of known size; `read(n)` returns n bytes unless the file ends."""

    def __init__(self, fetch: Fetch, size: int, *, name: str = "", sha256: str = "", version: str = "",
                 block_bytes: int = BLOCK_BYTES, cache_blocks: int = CACHE_BLOCKS,
                 read_ahead_bytes: int = READ_AHEAD_BYTES) -> None:
        super().__init__()
        self._fetch = fetch
        self.size = size
        self.name = name
        self.sha256 = sha256
        self.version = version
        self._block = block_bytes
        self._cache_blocks = cache_blocks
        self._most_ahead = max(read_ahead_bytes, block_bytes)
        self._ahead = block_bytes
        self._blocks: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        self._position = 0
        self._last_end = -1
        self._lock = threading.Lock()
        self.bytes_fetched = 0
        self.fetches = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise OSError(f"seek to {base + offset}, before the start of {self.name}")
        self._position = base + offset
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        start = self._position
        end = self.size if size is None or size < 0 else min(self.size, start + size)
        if end <= start:
            return b""
        with self._lock:
            data = self._read(start, end)
        self._position = end
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        target = memoryview(buffer).cast("B")
        data = self.read(len(target))
        target[:len(data)] = data
        return len(data)

    def close(self) -> None:
        self._blocks.clear()
        super().close()

    # --- the cache ------------------------------------------------------------------------------------

    def _read(self, start: int, end: int) -> bytes:
        sequential = start == self._last_end
        self._last_end = end
        if end - start >= self._block * self._cache_blocks // 2:
            return self._get(start, end - start)  # as big as the cache: straight through
        first, last = start // self._block, (end - 1) // self._block
        got = {number: self._blocks[number] for number in range(first, last + 1) if number in self._blocks}
        missing = [number for number in range(first, last + 1) if number not in got]
        if missing:
            self._ahead = min(self._ahead * 2, self._most_ahead) if sequential else self._block
            # One call for the missing run (cached blocks between two missing ones come along), plus read-ahead.
            want_end = max((missing[-1] + 1) * self._block, end + (self._ahead if sequential else 0))
            fetch_start = missing[0] * self._block
            data = self._get(fetch_start, min(self.size, -(-want_end // self._block) * self._block) - fetch_start)
            for offset in range(0, len(data), self._block):
                number = missing[0] + offset // self._block
                got[number] = data[offset:offset + self._block]
                self._keep(number, got[number])
        for number in range(first, last + 1):
            if number in self._blocks:
                self._blocks.move_to_end(number)
        pieces = []
        for number in range(first, last + 1):
            base = number * self._block
            pieces.append(got[number][max(start, base) - base:min(end, base + len(got[number])) - base])
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def _keep(self, number: int, block: bytes) -> None:
        self._blocks[number] = block
        self._blocks.move_to_end(number)
        while len(self._blocks) > self._cache_blocks:
            self._blocks.popitem(last=False)

    def _get(self, offset: int, length: int) -> bytes:
        data = self._fetch(offset, length)
        if len(data) != length:
            raise OSError(f"read {len(data)} bytes of {self.name} at {offset}; expected {length}")
        self.bytes_fetched += length
        self.fetches += 1
        return data
