"""Objects outside Quarry's store, for registered files: S3 buckets the server's credentials can read (any bucket
at the store's endpoint) and directories under QUARRY_REGISTER_ROOTS.

`ExternalSources.listing` lists a source; `pinned` opens one listed object for reads that fail instead of serving
bytes other than those pinned: S3 reads are conditional (`If-Match` the ETag listed, and the version id where the
bucket keeps versions), so S3 itself refuses a changed object (412); a local file is checked against its size and
modification time before each open. A changed object is FAILED_PRECONDITION (EXTERNAL_CHANGED), a missing one
NOT_FOUND (EXTERNAL_MISSING). Nothing here writes or deletes an external object.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aioboto3
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError

from server.model.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, Unavailable
from server.model.objects import READ_CHUNK_BYTES, ChunkReader, RandomReader
from server.model.registration import ExternalObject
from server.storage.objects.chunk_readers import FileChunkReader, LoopChunkReader
from server.storage.objects.local_reader import LocalFileReader
from server.storage.objects.seekable import RangeFile


@dataclass(frozen=True)
class S3Access:
    """How the server reaches S3: the store's endpoint, region and credentials."""

    endpoint: str | None
    region: str
    access_key_id: str | None
    secret_access_key: str | None


@dataclass(frozen=True)
class S3Source:
    """Objects of a bucket under a key prefix."""

    bucket: str
    prefix: str


@dataclass(frozen=True)
class LocalSource:
    """Files under a directory (inside a register root)."""

    directory: Path


Source = S3Source | LocalSource


def translate(exc: Exception, what: str, *, pinned: bool = False) -> Exception:
    """A driver error of an external read as a domain error: missing, changed, forbidden, or unavailable."""
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in ("PreconditionFailed", "412") or status == 412:
            return FailedPrecondition(f"{what} changed since it was registered; register it again",
                                      reason="EXTERNAL_CHANGED", metadata={"uri": what})
        if code in ("NoSuchKey", "404", "NotFound", "NoSuchVersion") or (status == 404 and pinned):
            if pinned:
                return NotFound(f"{what} is gone since it was registered", reason="EXTERNAL_MISSING",
                                metadata={"uri": what})
            return NotFound(f"{what} does not exist", reason="SOURCE_NOT_FOUND", metadata={"uri": what})
        if code == "NoSuchBucket":
            return NotFound(f"{what}: no such bucket", reason="SOURCE_NOT_FOUND", metadata={"uri": what})
        if code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled") or status == 403:
            return PermissionDenied(f"the server's credentials cannot read {what} ({code})",
                                    reason="SOURCE_ACCESS_DENIED", metadata={"uri": what})
        return Unavailable(f"S3 failed on {what}: {code}", reason="STORE_UNAVAILABLE")
    return Unavailable(f"S3 unreachable on {what}: {exc}", reason="STORE_UNAVAILABLE")


@contextlib.contextmanager
def _boundary(what: str, *, pinned: bool = False) -> Iterator[None]:
    try:
        yield
    except (ClientError, BotoCoreError, OSError) as exc:
        raise translate(exc, what, pinned=pinned) from exc


def local_etag(stat: os.stat_result) -> str:
    """What pins a local file's bytes: its size and modification time (nanoseconds)."""
    return f"{stat.st_size}-{stat.st_mtime_ns}"


class ExternalSources:
    """Lists sources and reads their objects, pinned."""

    def __init__(self, s3: S3Access | None, roots: tuple[Path, ...]) -> None:
        self.s3 = s3
        self.roots = tuple(root.resolve() for root in roots)
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None
        self._opening = asyncio.Lock()

    async def close(self) -> None:
        """Close the S3 client, if one was opened."""
        await self._stack.aclose()

    async def _s3(self) -> Any:
        async with self._opening:
            if self._client is None:
                assert self.s3 is not None
                session = aioboto3.Session(aws_access_key_id=self.s3.access_key_id,
                                           aws_secret_access_key=self.s3.secret_access_key,
                                           region_name=self.s3.region)
                config = AioConfig(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5,
                                   read_timeout=60, s3={"addressing_style": "path"},
                                   request_checksum_calculation="when_required",
                                   response_checksum_validation="when_required")
                self._client = await self._stack.enter_async_context(
                    session.client("s3", endpoint_url=self.s3.endpoint, config=config))
        return self._client

    def parse(self, uri: str) -> Source:
        """The source a URI names; refused when this server cannot (or may not) read it."""
        parts = urlsplit(uri)
        if parts.scheme == "s3" and parts.netloc:
            if self.s3 is None:
                raise FailedPrecondition("this server's object store is not S3: it has no credentials to read "
                                         f"{uri}", reason="SOURCE_UNSUPPORTED", metadata={"uri": uri})
            return S3Source(parts.netloc, parts.path.lstrip("/"))
        if parts.scheme == "file" and not parts.netloc and parts.path.startswith("/"):
            if not self.roots:
                raise FailedPrecondition("this server registers no local files: QUARRY_REGISTER_ROOTS is empty",
                                         reason="SOURCE_UNSUPPORTED", metadata={"uri": uri})
            directory = Path(unquote(parts.path)).resolve()  # symbolic links resolved: no way out of a root
            if not any(directory == root or root in directory.parents for root in self.roots):
                raise PermissionDenied(f"{directory} is outside the directories this server may register from "
                                       "(QUARRY_REGISTER_ROOTS)", reason="SOURCE_NOT_ALLOWED",
                                       metadata={"uri": uri})
            return LocalSource(directory)
        raise InvalidArgument.field("source_uri", f"must be s3://bucket/prefix or file:///path, got {uri!r}",
                                    reason="INVALID_SOURCE_URI")

    async def listing(self, source: Source) -> AsyncIterator[ExternalObject]:
        """Every object of the source, with what pins it."""
        if isinstance(source, LocalSource):
            for item in await asyncio.to_thread(_walk, source.directory):
                yield item
            return
        client = await self._s3()
        what = f"s3://{source.bucket}/{source.prefix}"
        token: str | None = None
        while True:
            options: dict[str, Any] = {"Bucket": source.bucket, "Prefix": source.prefix}
            if token:
                options["ContinuationToken"] = token
            with _boundary(what):
                page = await client.list_objects_v2(**options)
            for item in page.get("Contents", []):
                key = item["Key"]
                relative = key[len(source.prefix):].lstrip("/")
                if key.endswith("/") or not relative:
                    continue  # a folder marker
                yield ExternalObject(f"s3://{source.bucket}/{key}", item["ETag"], int(item["Size"]),
                                     relative)
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")

    async def version_id(self, item: ExternalObject) -> str:
        """The version id of an S3 object where the bucket keeps versions ("" where it does not)."""
        if not item.uri.startswith("s3://"):
            return ""
        bucket, key = _split(item.uri)
        client = await self._s3()
        with _boundary(item.uri, pinned=True):
            head = await client.head_object(Bucket=bucket, Key=key, IfMatch=item.etag)
        found = head.get("VersionId") or ""
        return "" if found == "null" else str(found)

    def pinned(self, item: ExternalObject) -> PinnedObject:
        """Reads of one listed object that fail if its bytes changed."""
        return PinnedObject(self, item)


def _walk(directory: Path) -> list[ExternalObject]:
    if not directory.is_dir():
        raise NotFound(f"{directory} is not a directory", reason="SOURCE_NOT_FOUND", metadata={"uri": str(directory)})
    found = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        stat = path.stat()
        found.append(ExternalObject(path.as_uri(), local_etag(stat), stat.st_size,
                                    path.relative_to(directory).as_posix()))
    return found


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


class PinnedObject:
    """One external object's bytes as listed (the read methods validation and the routed store use)."""

    def __init__(self, sources: ExternalSources, item: ExternalObject) -> None:
        self.sources = sources
        self.item = item

    def _local(self) -> Path:
        path = Path(unquote(urlsplit(self.item.uri).path))
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise NotFound(f"{self.item.uri} is gone since it was registered", reason="EXTERNAL_MISSING",
                           metadata={"uri": self.item.uri}) from None
        if local_etag(stat) != self.item.etag:
            raise FailedPrecondition(f"{self.item.uri} changed since it was registered; register it again",
                                     reason="EXTERNAL_CHANGED", metadata={"uri": self.item.uri})
        return path

    async def read(self, key: str = "", offset: int = 0, length: int | None = None,
                   chunk_bytes: int = READ_CHUNK_BYTES) -> AsyncIterator[bytes]:
        """Bytes from `offset` (the key is the object's own; the argument is the store interface's)."""
        end = self.item.size if length is None else min(self.item.size, offset + length)
        if end <= offset:
            return
        if not self.item.uri.startswith("s3://"):
            path = await asyncio.to_thread(self._local)
            with path.open("rb") as file:
                file.seek(offset)
                left = end - offset
                while left > 0:
                    chunk = await asyncio.to_thread(file.read, min(chunk_bytes, left))
                    if not chunk:
                        return
                    left -= len(chunk)
                    yield chunk
            return
        bucket, name = _split(self.item.uri)
        client = await self.sources._s3()
        options: dict[str, Any] = {"Bucket": bucket, "Key": name, "Range": f"bytes={offset}-{end - 1}",
                                   "IfMatch": self.item.etag}
        if self.item.version_id:
            options["VersionId"] = self.item.version_id
        with _boundary(self.item.uri, pinned=True):
            response = await client.get_object(**options)
            body = response["Body"]
            try:
                while chunk := await body.read(chunk_bytes):
                    yield chunk
            finally:
                body.close()

    async def read_range(self, key: str, offset: int, length: int) -> bytes:
        """`length` bytes from `offset`, joined (small ranges only)."""
        return b"".join([chunk async for chunk in self.read(key, offset, length)])

    async def open_sequential(self, key: str = "", chunk_bytes: int = READ_CHUNK_BYTES) -> ChunkReader:
        """The object as chunks, for a worker thread."""
        if not self.item.uri.startswith("s3://"):
            return FileChunkReader((await asyncio.to_thread(self._local)).open("rb"), chunk_bytes)
        return LoopChunkReader(self.read(key, 0, None, chunk_bytes), asyncio.get_running_loop())

    async def open_random(self, key: str = "", size: int = 0) -> RandomReader:
        """The object as a seekable file, for a worker thread."""
        if not self.item.uri.startswith("s3://"):
            return LocalFileReader(await asyncio.to_thread(self._local))
        return RangeFile.of_object(self, key, self.item.size, asyncio.get_running_loop())  # type: ignore[arg-type]
