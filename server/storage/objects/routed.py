"""The object store as the rest of the server sees it: Quarry's store, plus the inline files Postgres keeps and the
external objects registered files point at.

Keys under `inline/` name a file WriteFile kept in Postgres (`inline_objects`); keys under `external/` name a
registered object outside the store (its `fresh_objects` row says where, and what pins its bytes), read through
`ExternalSources` so that a changed or missing object fails the read; every other key goes to the configured
store. Deleting an external key touches nothing outside (the collector deletes its row). Reads of an inline key
fetch the content once (it is small, QUARRY_INLINE_MAX_BYTES at most) and serve it through the same interfaces,
so ReadFile, previews, statistics and Arrow Flight read an inline file like any other. Its bytes go away with its
`fresh_objects` row (the collector's delete cascades), so deleting the key here has nothing to do; a presigned
URL has no object to point at, for either kind.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence
from datetime import datetime

import asyncpg

from server.model.errors import InvalidArgument, NotFound, NotSupported
from server.model.objects import (
    INLINE_PREFIX,
    READ_CHUNK_BYTES,
    ChunkReader,
    CompletedPart,
    MultipartInfo,
    ObjectInfo,
    ObjectStore,
    PartWriter,
    RandomReader,
)
from server.model.registration import EXTERNAL_PREFIX, ExternalObject
from server.storage.db import Database
from server.storage.objects.external import ExternalSources, PinnedObject
from server.storage.objects.memory import ChunkedBytes, RandomBytes


def inline_key(namespace: str, sha256: str) -> str:
    """Where an inline file's content is keyed: by namespace and content, like a fresh object."""
    return f"{INLINE_PREFIX}{namespace}/{sha256}"


async def inline_content(connection: asyncpg.Connection, key: str) -> bytes | None:
    """The content of an inline file, or None."""
    value = await connection.fetchval("SELECT content FROM inline_objects WHERE key = $1", key)
    return None if value is None else bytes(value)


async def store_inline(connection: asyncpg.Connection, key: str, content: bytes) -> None:
    """Keep an inline file's content (its fresh_objects row first); the same content twice is one row."""
    await connection.execute("INSERT INTO inline_objects (key, content) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                             key, content)


class RoutedStore(ObjectStore):
    """The configured store for object keys; Postgres for `inline/` keys (reads only)."""

    def __init__(self, store: ObjectStore, db: Database, sources: ExternalSources | None = None) -> None:
        self.store = store
        self.db = db
        self.sources = sources
        self.kind = store.kind

    async def _external(self, key: str) -> PinnedObject | None:
        """The pinned reads of an external key; None for any other key."""
        if not key.startswith(EXTERNAL_PREFIX):
            return None
        async with self.db.connection() as connection:
            row = await connection.fetchrow(
                """SELECT external_uri, external_etag, external_version, size_bytes FROM fresh_objects
                   WHERE key = $1 AND external_uri IS NOT NULL""", key)
        if row is None or self.sources is None:
            raise NotFound(f"object {key} not found", reason="OBJECT_NOT_FOUND")
        return self.sources.pinned(ExternalObject(row["external_uri"], row["external_etag"], row["size_bytes"], "",
                                                  row["external_version"] or ""))

    @staticmethod
    def _is_inline(key: str) -> bool:
        return key.startswith(INLINE_PREFIX)

    async def _content(self, key: str) -> bytes:
        async with self.db.connection() as connection:
            found = await inline_content(connection, key)
        if found is None:
            raise NotFound(f"object {key} not found", reason="OBJECT_NOT_FOUND")
        return found

    def _no_writes(self, key: str) -> None:
        if self._is_inline(key):
            raise InvalidArgument(f"{key} is an inline file: written by WriteFile only", reason="INVALID_OBJECT_KEY")

    async def ping(self) -> None:
        await self.store.ping()

    async def free_bytes(self) -> int | None:
        return await self.store.free_bytes()

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> ObjectInfo:
        self._no_writes(key)
        return await self.store.put(key, chunks)

    async def read(self, key: str, offset: int = 0, length: int | None = None,
                   chunk_bytes: int = READ_CHUNK_BYTES) -> AsyncIterator[bytes]:
        external = await self._external(key)
        if external is not None:
            async for chunk in external.read(key, offset, length, chunk_bytes):
                yield chunk
            return
        if not self._is_inline(key):
            async for chunk in self.store.read(key, offset, length, chunk_bytes):
                yield chunk
            return
        data = await self._content(key)
        end = len(data) if length is None else min(len(data), offset + length)
        for start in range(offset, end, chunk_bytes):
            yield data[start:min(start + chunk_bytes, end)]

    async def read_range(self, key: str, offset: int, length: int) -> bytes:
        external = await self._external(key)
        if external is not None:
            return await external.read_range(key, offset, length)
        if self._is_inline(key):
            return (await self._content(key))[offset:offset + length]
        return await self.store.read_range(key, offset, length)

    async def stat(self, key: str) -> ObjectInfo | None:
        external = await self._external(key) if key.startswith(EXTERNAL_PREFIX) else None
        if external is not None:
            return ObjectInfo(key, external.item.size)
        if not self._is_inline(key):
            return await self.store.stat(key)
        async with self.db.connection() as connection:
            size = await connection.fetchval("SELECT octet_length(content) FROM inline_objects WHERE key = $1", key)
        return None if size is None else ObjectInfo(key, size)

    async def modified(self, key: str) -> datetime | None:
        if not self._is_inline(key):
            return await self.store.modified(key)
        async with self.db.connection() as connection:
            value: datetime | None = await connection.fetchval(
                "SELECT o.create_time FROM inline_objects i JOIN fresh_objects o USING (key) WHERE i.key = $1", key)
        return value

    async def delete(self, key: str) -> None:
        # An inline file's content goes with its fresh_objects row; an external object is not ours to delete.
        if not self._is_inline(key) and not key.startswith(EXTERNAL_PREFIX):
            await self.store.delete(key)

    async def copy(self, source: str, destination: str) -> ObjectInfo:
        self._no_writes(destination)
        if self._is_inline(source):
            data = await self._content(source)

            async def chunks() -> AsyncIterator[bytes]:
                yield data

            return await self.store.put(destination, chunks())
        return await self.store.copy(source, destination)

    def list_objects(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        return self.store.list_objects(prefix)

    async def create_multipart(self, key: str) -> str:
        self._no_writes(key)
        return await self.store.create_multipart(key)

    async def upload_part(self, key: str, upload_id: str, number: int, offset: int,
                          data: bytes | bytearray | memoryview) -> str:
        return await self.store.upload_part(key, upload_id, number, offset, data)

    def open_part(self, key: str, upload_id: str, number: int, offset: int, part_size: int,
                  part_count: int) -> PartWriter:
        return self.store.open_part(key, upload_id, number, offset, part_size, part_count)

    def part_buffer_bytes(self, part_size: int, part_count: int) -> int:
        return self.store.part_buffer_bytes(part_size, part_count)

    async def complete_multipart(self, key: str, upload_id: str, parts: Sequence[CompletedPart]) -> ObjectInfo:
        return await self.store.complete_multipart(key, upload_id, parts)

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        await self.store.abort_multipart(key, upload_id)

    def list_multipart(self, prefix: str) -> AsyncIterator[MultipartInfo]:
        return self.store.list_multipart(prefix)

    async def presign_get(self, key: str, ttl_seconds: int) -> str:
        if self._is_inline(key) or key.startswith(EXTERNAL_PREFIX):
            raise NotSupported(f"{key} is not in the object store (an inline file, or a registered external object): "
                               "there is no object to presign; use ReadFile", reason="NOT_IN_OBJECT_STORE")
        return await self.store.presign_get(key, ttl_seconds)

    async def open_sequential(self, key: str, chunk_bytes: int = READ_CHUNK_BYTES) -> ChunkReader:
        external = await self._external(key)
        if external is not None:
            return await external.open_sequential(key, chunk_bytes)
        if self._is_inline(key):
            return ChunkedBytes(await self._content(key), chunk_bytes)
        return await self.store.open_sequential(key, chunk_bytes)

    async def open_random(self, key: str, size: int) -> RandomReader:
        external = await self._external(key)
        if external is not None:
            return await external.open_random(key, size)
        if self._is_inline(key):
            return RandomBytes(await self._content(key))
        return await self.store.open_random(key, size)

    async def close(self) -> None:
        """Nothing: the configured store is closed by whoever opened it (`server/connections.py`)."""
