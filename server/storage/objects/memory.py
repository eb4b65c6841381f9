"""Bytes held in memory read through the store's reader interfaces: a small inline file (at most a few hundred
KiB) is read from Postgres whole, then served as any object is, to pyarrow, validation and ReadFile alike."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

from server.model.objects import READ_CHUNK_BYTES, ChunkReader, RandomReader


class ChunkedBytes(ChunkReader):
    """Bytes as a sequence of chunks."""

    def __init__(self, data: bytes, chunk_bytes: int = READ_CHUNK_BYTES) -> None:
        self._data = memoryview(data)
        self._chunk = chunk_bytes
        self._position = 0

    def next_chunk(self) -> bytes:
        piece = bytes(self._data[self._position:self._position + self._chunk])
        self._position += len(piece)
        return piece

    def close(self) -> None:
        self._data = memoryview(b"")


class RandomBytes(RandomReader):
    """Bytes as a seekable, read-only file."""

    remote = False

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self._file = io.BytesIO(data)
        self.bytes_fetched = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._file.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        count = self._file.readinto(buffer)
        self.bytes_fetched += count
        return count

    def close(self) -> None:
        self._file.close()
        super().close()


class BytesObject:
    """One object's bytes with the read methods validation uses (`validate_object` takes it in place of a
    store): content validated before anything is written."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def read_range(self, key: str, offset: int, length: int) -> bytes:
        return self.data[offset:offset + length]

    async def read(self, key: str, offset: int = 0, length: int | None = None,
                   chunk_bytes: int = READ_CHUNK_BYTES) -> AsyncIterator[bytes]:
        end = len(self.data) if length is None else min(len(self.data), offset + length)
        for start in range(offset, end, chunk_bytes):
            yield self.data[start:min(start + chunk_bytes, end)]

    async def open_sequential(self, key: str, chunk_bytes: int = READ_CHUNK_BYTES) -> ChunkReader:
        return ChunkedBytes(self.data, chunk_bytes)

    async def open_random(self, key: str, size: int) -> RandomReader:
        return RandomBytes(self.data)
