"""The object-store interface: streaming reads and writes, multipart parts, copies.

Keys are "/"-separated relative paths such as `staging/{ns}/{upload}` or `fresh/{ns}/{ds}/objects/{sha}`.
Nothing here returns a whole object as one value: reads are async iterators of chunks.
Failures of the store itself raise `server.model.errors.Unavailable`; a missing object raises `NotFound`.
"""

from __future__ import annotations

import abc
import io
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from server.model.errors import InvalidArgument

READ_CHUNK_BYTES = 1 << 20
# Keys of the small files WriteFile keeps in Postgres instead of the store (`server/storage/objects/routed.py`).
INLINE_PREFIX = "inline/"


@dataclass(frozen=True)
class ObjectInfo:
    """What the store knows about one object."""

    key: str
    size: int


@dataclass(frozen=True)
class MultipartInfo:
    """An unfinished multipart write: its key, id and when it began."""

    key: str
    upload_id: str
    initiated: datetime


@dataclass(frozen=True)
class CompletedPart:
    """A part to assemble: its 1-based number, the etag its write returned, and its size."""

    number: int
    etag: str
    size: int


def check_key(key: str) -> str:
    """Refuse keys that could escape the store's root."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\x00" in key:
        raise InvalidArgument(f"invalid object key {key!r}", reason="INVALID_OBJECT_KEY")
    return key


class ChunkReader(abc.ABC):
    """An object's bytes in order, for code running in a worker thread (blocking calls)."""

    @abc.abstractmethod
    def next_chunk(self) -> bytes:
        """The next chunk of the object; b"" at its end."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the file or stream behind the reader."""


class RandomReader(io.RawIOBase):
    """A seekable, read-only file over one object, for readers running in a worker thread (pyarrow).

    `remote` says whether each fetch is a request to another machine (a reader that will read everything
    should then stream it once instead); `bytes_fetched` counts what was read from the store.
    """

    remote: bool = True
    bytes_fetched: int = 0

    def prefetch(self, ranges: list[tuple[int, int]]) -> None:  # noqa: B027 - optional hint
        """Fetch ranges that reads will soon need, all at once (a hint: stores where reads are cheap ignore it)."""


class PartWriter(abc.ABC):
    """Receives the bytes of one part in pieces; `commit` makes them durable and returns the part's etag."""

    size = 0

    @abc.abstractmethod
    async def write(self, data: memoryview) -> None:
        """Append bytes to the part."""

    @abc.abstractmethod
    async def commit(self) -> str:
        """Make the part durable; return its etag."""

    @abc.abstractmethod
    async def discard(self) -> None:
        """Drop the part's bytes (a broken stream): nothing of it counts."""


class ObjectReads(Protocol):
    """The reads validation makes of one object: any `ObjectStore`, or bytes not yet stored."""

    async def read_range(self, key: str, offset: int, length: int) -> bytes:
        """`length` bytes from `offset`."""

    async def open_sequential(self, key: str, chunk_bytes: int = READ_CHUNK_BYTES) -> ChunkReader:
        """The object as chunks for a worker thread."""

    async def open_random(self, key: str, size: int) -> RandomReader:
        """The object as a seekable file for a worker thread."""


class ObjectStore(abc.ABC):
    """Bytes by key. Implementations: `S3Store` (aioboto3) and `LocalStore` (aiofiles)."""

    kind: str = ""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Return when the store answers; raise Unavailable otherwise."""

    @abc.abstractmethod
    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> ObjectInfo:
        """Write an object from a stream of chunks; it appears whole or not at all."""

    @abc.abstractmethod
    def read(self, key: str, offset: int = 0, length: int | None = None,
             chunk_bytes: int = READ_CHUNK_BYTES) -> AsyncIterator[bytes]:
        """Stream `length` bytes (default: to the end) from `offset`; raise NotFound if missing."""

    async def read_range(self, key: str, offset: int, length: int) -> bytes:
        """`length` bytes from `offset`, joined: for small ranges only (a footer, a page, a file's first block)."""
        return b"".join([chunk async for chunk in self.read(key, offset, length)])

    @abc.abstractmethod
    async def stat(self, key: str) -> ObjectInfo | None:
        """Size of an object, or None when it does not exist."""

    @abc.abstractmethod
    async def modified(self, key: str) -> datetime | None:
        """When the object was last written (UTC), or None when it does not exist."""

    async def free_bytes(self) -> int | None:
        """Bytes the store can still take, where it knows (a local file system); None where it does not."""
        return None

    async def exists(self, key: str) -> bool:
        """Whether the object exists."""
        return await self.stat(key) is not None

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Delete an object; deleting a missing object is not an error."""

    @abc.abstractmethod
    async def copy(self, source: str, destination: str) -> ObjectInfo:
        """Copy an object inside the store without passing its bytes through this process when possible; the
        copy's size is checked against the source's (Unavailable, nothing left at `destination`, if it differs)."""

    @abc.abstractmethod
    def list_objects(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        """Every object whose key starts with `prefix`."""

    @abc.abstractmethod
    async def create_multipart(self, key: str) -> str:
        """Start a multipart write of `key`; return its id."""

    @abc.abstractmethod
    async def upload_part(self, key: str, upload_id: str, number: int, offset: int,
                          data: bytes | bytearray | memoryview) -> str:
        """Durably write part `number` (whose first byte is at `offset`); return its etag."""

    @abc.abstractmethod
    def open_part(self, key: str, upload_id: str, number: int, offset: int, part_size: int,
                  part_count: int) -> PartWriter:
        """A writer for part `number` of a multipart write whose parts have `part_size` bytes (the last may be
        shorter) and which will have at most `part_count` parts."""

    @abc.abstractmethod
    def part_buffer_bytes(self, part_size: int, part_count: int) -> int:
        """The most memory one `open_part` writer holds for parts of `part_size` (in a file of `part_count`
        parts): what the server's buffer budget must grant it."""

    @abc.abstractmethod
    async def complete_multipart(self, key: str, upload_id: str, parts: Sequence[CompletedPart]) -> ObjectInfo:
        """Assemble the parts, in order, into the object. Safe to call again after it succeeded."""

    @abc.abstractmethod
    async def abort_multipart(self, key: str, upload_id: str) -> None:
        """Drop a multipart write and its parts; aborting an unknown one is not an error."""

    @abc.abstractmethod
    def list_multipart(self, prefix: str) -> AsyncIterator[MultipartInfo]:
        """Every unfinished multipart write whose key starts with `prefix`."""

    @abc.abstractmethod
    async def presign_get(self, key: str, ttl_seconds: int) -> str:
        """A URL that GETs the object without credentials; NotSupported where the store cannot."""

    @abc.abstractmethod
    async def open_sequential(self, key: str, chunk_bytes: int = READ_CHUNK_BYTES) -> ChunkReader:
        """The object as chunks for a worker thread; NotFound if missing."""

    @abc.abstractmethod
    async def open_random(self, key: str, size: int) -> RandomReader:
        """The object (of `size` bytes) as a seekable file for a worker thread; NotFound if missing."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
