"""A staged object as a blocking, forward-only file, for pyarrow running in a worker thread.

The validation thread pulls chunks from the store's `ChunkReader` (a local file read in place, or a remote
stream fetched through the event loop at the pace of the parser). Every chunk is also handed to a
second thread that hashes it and counts its newlines, so SHA-256 costs no time on the parsing thread.
The last few chunks stay in a window, so an error can be traced back to its line.
"""

from __future__ import annotations

import collections
import concurrent.futures
import hashlib
import io

from server.model.objects import ChunkReader

WINDOW_BYTES = 8 << 20
CHUNK_BYTES = 1 << 20


class StreamedObject(io.RawIOBase):
    """Read-only, forward-only bytes of an object; `sha256()` once read, `window()` for the latest bytes."""

    def __init__(self, reader: ChunkReader, *, count_lines: bool = True) -> None:
        """Read the store's chunks through `reader`. `count_lines` keeps `window()`'s line numbers right (only
        a format without its own line numbers in errors needs them)."""
        super().__init__()
        self._count_lines = count_lines
        self._reader = reader
        self._current = memoryview(b"")
        self._done = False
        self._hash = hashlib.sha256()
        self._hasher = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256")
        self._counts: collections.deque[tuple[int, int, concurrent.futures.Future[int]]] = collections.deque()
        self._window: collections.deque[tuple[int, bytes]] = collections.deque()
        self._window_bytes = 0
        self._lines_before_window = 0
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def _next_chunk(self) -> bool:
        if self._done:
            return False
        chunk = self._reader.next_chunk()
        if not chunk:
            self._done = True
            return False
        offset = self.bytes_read
        self.bytes_read += len(chunk)
        self._counts.append((offset, len(chunk), self._hasher.submit(self._digest, chunk)))
        self._window.append((offset, chunk))
        self._window_bytes += len(chunk)
        while self._window_bytes > WINDOW_BYTES and len(self._window) > 2:
            _, old = self._window.popleft()
            self._window_bytes -= len(old)
            self._lines_before_window += self._counts.popleft()[2].result()
        self._current = memoryview(chunk)
        return True

    def _digest(self, chunk: bytes) -> int:
        self._hash.update(chunk)  # releases the GIL for large buffers: runs beside the parser
        return chunk.count(b"\n") if self._count_lines else 0

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        # Fills the whole buffer (across chunks) unless the object ends: pyarrow asks for a block at a time, and
        # a short read would make its record batches a chunk long, multiplying the per-batch statistics work.
        filled = 0
        while filled < len(buffer):
            if not self._current and not self._next_chunk():
                break
            size = min(len(buffer) - filled, len(self._current))
            buffer[filled:filled + size] = self._current[:size]
            self._current = self._current[size:]
            filled += size
        return filled

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (fewer only at the end). pyarrow reads through this: a store chunk that is exactly the
        block asked for is handed over as it is, else the pieces are joined once (RawIOBase's read would copy
        twice, through a bytearray, holding the GIL)."""
        if size < 0:
            return self.readall()
        pieces: list[memoryview] = []
        filled = 0
        while filled < size:
            if not self._current and not self._next_chunk():
                break
            take = min(size - filled, len(self._current))
            pieces.append(self._current[:take])
            self._current = self._current[take:]
            filled += take
        if len(pieces) == 1 and isinstance(pieces[0].obj, bytes) and len(pieces[0].obj) == filled:
            return pieces[0].obj  # a whole chunk: no copy
        return b"".join(pieces)

    def drain(self) -> None:
        """Read whatever the parser left unread (the hash covers every byte)."""
        self._current = memoryview(b"")
        while self._next_chunk():
            self._current = memoryview(b"")

    def sha256(self) -> str:
        """Hex SHA-256 of every byte read so far (call after `drain`)."""
        for _, _, future in self._counts:
            future.result()
        return self._hash.hexdigest()

    def window(self) -> tuple[int, bytes]:
        """(1-based line number of the window's first byte, the window's bytes): the most recent data."""
        return self._lines_before_window + 1, b"".join(chunk for _, chunk in self._window)

    def close(self) -> None:
        self._hasher.shutdown(wait=True)
        self._reader.close()
        super().close()
