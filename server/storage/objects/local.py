"""A local-directory object store (aiofiles), used by the embedded default and single-machine setups.

Layout under the root: objects at `<root>/<key>`, multipart writes in `<root>/.multipart/<key>/<id>` (one
file, each part written at its offset), temporary files in `<root>/.tmp/`. Every write goes through
`FileCalls` (local_io.py), which checks the bytes each call took; every write is fsynced before it returns,
and objects appear by an atomic rename once their size is checked, so neither a crash nor a file system that
took only part of a write leaves a short object under a key.
File-system errors (a full disk, an I/O error) are translated here, at the boundary, into Unavailable
(STORE_UNAVAILABLE) as the S3 store does: untranslated, an OSError raised inside a database transaction
would reach the client as "database unavailable".
"""

from __future__ import annotations

import asyncio
import errno
import os
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import aiofiles
import aiofiles.os

from server.model.errors import FailedPrecondition, InvalidArgument, NotFound, NotSupported, Unavailable
from server.model.objects import (
    READ_CHUNK_BYTES,
    ChunkReader,
    CompletedPart,
    MultipartInfo,
    ObjectInfo,
    ObjectStore,
    PartWriter,
    RandomReader,
    check_key,
)
from server.storage.objects.chunk_readers import FileChunkReader
from server.storage.objects.local_io import SYSTEM, FileCalls, boundary, fsync_path, write_all
from server.storage.objects.local_parts import PART_WRITER_BYTES, WriteThroughPart
from server.storage.objects.local_reader import LocalFileReader

COPY_BLOCK = 4 << 20


def _open_and_read(path: Path, size: int, offset: int) -> tuple[int, bytes]:
    """A file opened for reading and its first `size` bytes from `offset` (fewer at its end)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        return fd, os.pread(fd, size, offset) if size > 0 else b""
    except BaseException:
        os.close(fd)
        raise


class LocalStore(ObjectStore):
    """Objects as files under one directory."""

    kind = "file"

    def __init__(self, root: Path, calls: FileCalls = SYSTEM) -> None:
        self.root = root
        self.calls = calls
        self._tmp = root / ".tmp"
        self._multipart = root / ".multipart"

    async def open(self) -> LocalStore:
        """Create the directory layout."""
        for directory in (self.root, self._tmp, self._multipart):
            await aiofiles.os.makedirs(directory, exist_ok=True)
        return self

    def _path(self, key: str) -> Path:
        check_key(key)
        if key.startswith("."):
            raise InvalidArgument(f"invalid object key {key!r}", reason="INVALID_OBJECT_KEY")
        return self.root / key

    def _part_file(self, key: str, upload_id: str) -> Path:
        self._path(key)
        if not upload_id or "/" in upload_id or upload_id.startswith("."):
            raise InvalidArgument(f"invalid multipart id {upload_id!r}", reason="INVALID_OBJECT_KEY")
        return self._multipart / key / upload_id

    async def ping(self) -> None:
        if not await asyncio.to_thread(os.access, self.root, os.W_OK):
            raise Unavailable(f"object store directory {self.root} is not writable", reason="STORE_UNAVAILABLE")

    async def free_bytes(self) -> int | None:
        stat = await asyncio.to_thread(os.statvfs, self.root)
        return stat.f_bavail * stat.f_frsize

    async def _publish(self, temporary: Path, key: str, size: int) -> ObjectInfo:
        """fsync a finished temporary file of `size` bytes and rename it into place."""
        destination = self._path(key)
        await asyncio.to_thread(fsync_path, temporary)
        found = (await aiofiles.os.stat(temporary)).st_size
        if found != size:
            raise Unavailable(f"object {key} would have {found} bytes instead of {size}; not published",
                              reason="STORE_UNAVAILABLE")
        await aiofiles.os.makedirs(destination.parent, exist_ok=True)
        await aiofiles.os.replace(temporary, destination)
        await asyncio.to_thread(fsync_path, destination.parent)
        return ObjectInfo(key, size)

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> ObjectInfo:
        self._path(key)
        temporary = self._tmp / uuid.uuid4().hex
        with boundary(f"object {key}"):
            try:
                fd = await asyncio.to_thread(self.calls.open, temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
                size = 0
                try:
                    async for chunk in chunks:
                        size += await asyncio.to_thread(write_all, self.calls, fd, chunk, size)
                    await asyncio.to_thread(self.calls.fdatasync, fd)
                finally:
                    await asyncio.to_thread(self.calls.close, fd)
                return await self._publish(temporary, key, size)
            finally:
                await asyncio.to_thread(temporary.unlink, missing_ok=True)

    async def read(self, key: str, offset: int = 0, length: int | None = None,
                   chunk_bytes: int = READ_CHUNK_BYTES) -> AsyncIterator[bytes]:
        path = self._path(key)
        first = chunk_bytes if length is None else min(chunk_bytes, length)
        try:
            # One thread hop opens the file and reads the first chunk (a small ranged read needs no other); each
            # further chunk is one pread, and closing a file opened for reading does not block.
            fd, chunk = await asyncio.to_thread(_open_and_read, path, first, offset)
        except FileNotFoundError:
            raise NotFound(f"object {key} not found", reason="OBJECT_NOT_FOUND") from None
        try:
            remaining = length
            position = offset
            while chunk:
                if remaining is not None:
                    remaining -= len(chunk)
                position += len(chunk)
                yield chunk
                if remaining is not None and remaining <= 0:
                    break
                want = chunk_bytes if remaining is None else min(chunk_bytes, remaining)
                chunk = await asyncio.to_thread(os.pread, fd, want, position)
        finally:
            os.close(fd)

    async def stat(self, key: str) -> ObjectInfo | None:
        try:
            return ObjectInfo(key, (await aiofiles.os.stat(self._path(key))).st_size)
        except FileNotFoundError:
            return None

    async def modified(self, key: str) -> datetime | None:
        try:
            return datetime.fromtimestamp((await aiofiles.os.stat(self._path(key))).st_mtime, UTC)
        except FileNotFoundError:
            return None

    async def delete(self, key: str) -> None:
        path = self._path(key)
        with boundary(f"object {key}"):
            await asyncio.to_thread(path.unlink, missing_ok=True)

    async def copy(self, source: str, destination: str) -> ObjectInfo:
        src = self._path(source)
        temporary = self._tmp / uuid.uuid4().hex
        with boundary(f"copy of {source} to {destination}"):
            try:
                try:
                    size = (await aiofiles.os.stat(src)).st_size
                    # Objects never change once written, so a hard link is a safe, instant copy.
                    await asyncio.to_thread(os.link, src, temporary)
                except FileNotFoundError:
                    raise NotFound(f"object {source} not found", reason="OBJECT_NOT_FOUND") from None
                except OSError as exc:
                    if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                        raise
                    await asyncio.to_thread(self._copy_bytes, src, temporary)
                return await self._publish(temporary, destination, size)
            finally:
                await asyncio.to_thread(temporary.unlink, missing_ok=True)

    async def list_objects(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        directory = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        top = self.root / directory
        entries = await asyncio.to_thread(_walk_files, top, self.root)
        for key, size in entries:
            if key.startswith(prefix) and not key.startswith("."):
                yield ObjectInfo(key, size)

    async def create_multipart(self, key: str) -> str:
        upload_id = uuid.uuid4().hex
        part_file = self._part_file(key, upload_id)
        with boundary(f"multipart write of {key}"):
            await aiofiles.os.makedirs(part_file.parent, exist_ok=True)
            async with aiofiles.open(part_file, "xb"):
                pass
        return upload_id

    async def upload_part(self, key: str, upload_id: str, number: int, offset: int,
                          data: bytes | bytearray | memoryview) -> str:
        part_file = self._part_file(key, upload_id)
        try:
            handle = await aiofiles.open(part_file, "r+b")
        except FileNotFoundError:
            raise NotFound(f"multipart write {upload_id} not found", reason="MULTIPART_NOT_FOUND") from None
        with boundary(f"part {number} of {key}"):
            try:
                await asyncio.to_thread(write_all, self.calls, handle.fileno(), data, offset)
                await asyncio.to_thread(self.calls.fdatasync, handle.fileno())
            finally:
                await handle.close()
        return f"{number}-{offset}-{len(data)}"

    def open_part(self, key: str, upload_id: str, number: int, offset: int, part_size: int,
                  part_count: int) -> PartWriter:
        return WriteThroughPart(self._part_file(key, upload_id), key, upload_id, number, offset, self.calls)

    def part_buffer_bytes(self, part_size: int, part_count: int) -> int:
        return PART_WRITER_BYTES

    async def complete_multipart(self, key: str, upload_id: str, parts: Sequence[CompletedPart]) -> ObjectInfo:
        part_file = self._part_file(key, upload_id)
        total = sum(part.size for part in parts)
        with boundary(f"completing {key}"):
            try:
                size = (await aiofiles.os.stat(part_file)).st_size
            except FileNotFoundError:
                done = await self.stat(key)
                if done is not None and done.size == total:
                    return done  # completed before: completing again is a no-op
                raise NotFound(f"multipart write {upload_id} not found", reason="MULTIPART_NOT_FOUND") from None
            if size < total:
                raise FailedPrecondition(f"multipart file holds {size} bytes, parts add up to {total}",
                                         reason="MULTIPART_SHORT")
            if size > total:
                await asyncio.to_thread(os.truncate, part_file, total)
            info = await self._publish(part_file, key, total)
            await asyncio.to_thread(_remove_empty_dir, part_file.parent)
        return info

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        part_file = self._part_file(key, upload_id)
        with boundary(f"aborting the multipart write of {key}"):
            await asyncio.to_thread(part_file.unlink, missing_ok=True)
            await asyncio.to_thread(_remove_empty_dir, part_file.parent)

    async def list_multipart(self, prefix: str) -> AsyncIterator[MultipartInfo]:
        entries = await asyncio.to_thread(_walk_files, self._multipart, self._multipart)
        for relative, _size in entries:
            key, _, upload_id = relative.rpartition("/")
            if key.startswith(prefix):
                stat = await aiofiles.os.stat(self._multipart / relative)
                yield MultipartInfo(key, upload_id, datetime.fromtimestamp(stat.st_mtime, UTC))

    async def open_sequential(self, key: str, chunk_bytes: int = READ_CHUNK_BYTES) -> ChunkReader:
        path = self._path(key)
        try:
            file = await asyncio.to_thread(open, path, "rb")
        except FileNotFoundError:
            raise NotFound(f"object {key} not found", reason="OBJECT_NOT_FOUND") from None
        return FileChunkReader(file, chunk_bytes)

    async def open_random(self, key: str, size: int) -> RandomReader:
        path = self._path(key)
        try:
            return await asyncio.to_thread(LocalFileReader, path)
        except FileNotFoundError:
            raise NotFound(f"object {key} not found", reason="OBJECT_NOT_FOUND") from None

    async def presign_get(self, key: str, ttl_seconds: int) -> str:
        raise NotSupported("the local object store cannot presign URLs; use ReadFile to download",
                           reason="DOWNLOAD_URL_UNSUPPORTED")


    def _copy_bytes(self, source: Path, destination: Path) -> None:
        """Copy a file's bytes through FileCalls (where a hard link is impossible), fdatasync'd."""
        fd = self.calls.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        try:
            with open(source, "rb") as reader:
                offset = 0
                while block := reader.read(COPY_BLOCK):
                    offset += write_all(self.calls, fd, block, offset)
            self.calls.fdatasync(fd)
        finally:
            self.calls.close(fd)


def _remove_empty_dir(directory: Path) -> None:
    try:
        directory.rmdir()
    except OSError:
        pass  # not empty (another multipart write of the same key) or already gone


def _walk_files(top: Path, root: Path) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    for directory, _dirs, files in os.walk(top):
        for name in files:
            path = Path(directory) / name
            try:
                found.append((path.relative_to(root).as_posix(), path.stat().st_size))
            except FileNotFoundError:
                continue
    return sorted(found)
