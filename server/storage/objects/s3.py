"""An S3 object store through aioboto3: AWS, MinIO, or moto's standalone server.

One client is opened at start-up and shared. Driver errors are translated here, at the boundary:
a missing key or multipart id becomes NotFound, anything that means "the store did not answer"
becomes Unavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from datetime import datetime
from typing import Any

import aioboto3
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError

from server.model.errors import NotFound, Unavailable
from server.model.locations import S3Location
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
from server.storage.objects.chunk_readers import LoopChunkReader
from server.storage.objects.s3parts import IN_FLIGHT, StreamedPart, s3_parts, sub_parts
from server.storage.objects.seekable import RangeFile

MULTIPART_THRESHOLD = 8 << 20
MAX_SINGLE_COPY = 5 << 30
COPY_PART_BYTES = 512 << 20
_MISSING_CODES = {"404", "NoSuchKey", "NoSuchUpload", "NotFound"}


def _translate(exc: Exception, what: str) -> Exception:
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in _MISSING_CODES:
            return NotFound(f"{what} not found", reason="OBJECT_NOT_FOUND")
        if status >= 500 or code in ("SlowDown", "ServiceUnavailable", "RequestTimeout"):
            return Unavailable(f"object store failed on {what}: {code}", reason="STORE_UNAVAILABLE")
        return Unavailable(f"object store refused {what}: {code} {exc}", reason="STORE_ERROR")
    return Unavailable(f"object store unreachable on {what}: {exc}", reason="STORE_UNAVAILABLE")


@contextlib.contextmanager
def _boundary(what: str) -> Any:
    try:
        yield
    except (ClientError, BotoCoreError, OSError) as exc:
        raise _translate(exc, what) from exc


class S3Store(ObjectStore):
    """Objects in one bucket, under an optional key prefix."""

    kind = "s3"

    def __init__(self, location: S3Location, access_key_id: str | None = None,
                 secret_access_key: str | None = None, max_connections: int = 64, parts_in_flight: int = 4) -> None:
        self.location = location
        self.part_slots = asyncio.Semaphore(parts_in_flight)
        self._session = aioboto3.Session(
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            region_name=location.region,
        )
        self._config = AioConfig(
            max_pool_connections=max_connections,
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
            # Checksums are ours to compute (crc32c per chunk, sha256 per file); skip botocore's extra pass.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path"},
        )
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    async def open(self) -> S3Store:
        """Open the shared client."""
        self._client = await self._stack.enter_async_context(
            self._session.client("s3", endpoint_url=self.location.endpoint, config=self._config))
        return self

    async def close(self) -> None:
        await self._stack.aclose()

    def _key(self, key: str) -> str:
        return self.location.prefix + check_key(key)

    @property
    def _bucket(self) -> str:
        return self.location.bucket

    async def ping(self) -> None:
        with _boundary(f"bucket {self._bucket}"):
            await self._client.head_bucket(Bucket=self._bucket)

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> ObjectInfo:
        buffer = bytearray()
        upload_id: str | None = None
        parts: list[CompletedPart] = []

        async def send_part(upload_id: str) -> None:
            etag = await self.upload_part(key, upload_id, len(parts) + 1, sum(p.size for p in parts), buffer)
            parts.append(CompletedPart(len(parts) + 1, etag, len(buffer)))

        try:
            async for chunk in chunks:
                buffer += chunk
                if len(buffer) >= MULTIPART_THRESHOLD:
                    if upload_id is None:
                        upload_id = await self.create_multipart(key)
                    await send_part(upload_id)
                    buffer = bytearray()
            if upload_id is None:
                with _boundary(f"object {key}"):
                    await self._client.put_object(Bucket=self._bucket, Key=self._key(key), Body=bytes(buffer))
                return ObjectInfo(key, len(buffer))
            if buffer:
                await send_part(upload_id)
            return await self.complete_multipart(key, upload_id, parts)
        except BaseException:
            if upload_id is not None:
                with contextlib.suppress(Exception):
                    await self.abort_multipart(key, upload_id)
            raise

    async def read(self, key: str, offset: int = 0, length: int | None = None,
                   chunk_bytes: int = READ_CHUNK_BYTES) -> AsyncIterator[bytes]:
        if length == 0:
            return
        byte_range = f"bytes={offset}-" if length is None else f"bytes={offset}-{offset + length - 1}"
        with _boundary(f"object {key}"):
            try:
                response = await self._client.get_object(Bucket=self._bucket, Key=self._key(key), Range=byte_range)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                    return  # reading at the end of the object: nothing to read
                raise
            body = response["Body"]
            try:
                while True:
                    chunk = await body.read(chunk_bytes)
                    if not chunk:
                        break
                    yield chunk
            finally:
                body.close()

    async def _head(self, key: str) -> dict[str, Any] | None:
        """The object's HEAD response, or None when there is no such object."""
        try:
            with _boundary(f"object {key}"):
                return dict(await self._client.head_object(Bucket=self._bucket, Key=self._key(key)))
        except NotFound:
            return None

    async def stat(self, key: str) -> ObjectInfo | None:
        head = await self._head(key)
        return None if head is None else ObjectInfo(key, int(head["ContentLength"]))

    async def modified(self, key: str) -> datetime | None:
        head = await self._head(key)
        return None if head is None else head["LastModified"]

    async def delete(self, key: str) -> None:
        with _boundary(f"object {key}"):
            await self._client.delete_object(Bucket=self._bucket, Key=self._key(key))

    async def copy(self, source: str, destination: str) -> ObjectInfo:
        info = await self.stat(source)
        if info is None:
            raise NotFound(f"object {source} not found", reason="OBJECT_NOT_FOUND")
        copy_source = {"Bucket": self._bucket, "Key": self._key(source)}
        if info.size <= MAX_SINGLE_COPY:
            with _boundary(f"copy of {source}"):
                result = await self._client.copy_object(Bucket=self._bucket, Key=self._key(destination),
                                                        CopySource=copy_source)
            if not result.get("CopyObjectResult", {}).get("ETag"):
                raise Unavailable(f"copy of {source} returned no result", reason="COPY_INCOMPLETE")
            return await self._check_copy(source, destination, info.size)
        # Above 5 GiB S3 refuses a single copy: copy ranges as parts of a multipart upload.
        await self._copy_parts(source, destination, copy_source, info.size)
        return await self._check_copy(source, destination, info.size)

    async def _check_copy(self, source: str, destination: str, size: int) -> ObjectInfo:
        """The copy has the source's size, or it is deleted and the copy fails (to be tried again)."""
        copied = await self.stat(destination)
        if copied is None or copied.size != size:
            with contextlib.suppress(Exception):
                await self.delete(destination)
            found = "nothing" if copied is None else f"{copied.size} bytes"
            raise Unavailable(f"copy of {source} ({size} bytes) left {found} at {destination}",
                              reason="COPY_INCOMPLETE")
        return copied

    async def _copy_parts(self, source: str, destination: str, copy_source: dict[str, str], size: int) -> None:
        upload_id = await self.create_multipart(destination)
        try:
            parts = []
            for number, start in enumerate(range(0, size, COPY_PART_BYTES), start=1):
                end = min(start + COPY_PART_BYTES, size) - 1
                with _boundary(f"copy of {source}"):
                    result = await self._client.upload_part_copy(
                        Bucket=self._bucket, Key=self._key(destination), UploadId=upload_id,
                        PartNumber=number, CopySource=copy_source, CopySourceRange=f"bytes={start}-{end}")
                parts.append(CompletedPart(number, result["CopyPartResult"]["ETag"], end - start + 1))
            await self.complete_multipart(destination, upload_id, parts)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.abort_multipart(destination, upload_id)
            raise

    async def list_objects(self, prefix: str) -> AsyncIterator[ObjectInfo]:
        strip = len(self.location.prefix)
        with _boundary(f"listing of {prefix}"):
            paginator = self._client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self._bucket, Prefix=self.location.prefix + prefix):
                for item in page.get("Contents", []):
                    yield ObjectInfo(item["Key"][strip:], int(item["Size"]))

    async def create_multipart(self, key: str) -> str:
        with _boundary(f"multipart start of {key}"):
            response = await self._client.create_multipart_upload(Bucket=self._bucket, Key=self._key(key))
        return str(response["UploadId"])

    async def upload_part(self, key: str, upload_id: str, number: int, offset: int,
                          data: bytes | bytearray | memoryview) -> str:
        return await self.upload_part_body(key, upload_id, number, io.BytesIO(data))

    async def upload_part_body(self, key: str, upload_id: str, number: int, body: io.BytesIO) -> str:
        """Like `upload_part`, for a body already in a BytesIO (no copy on the way to the socket)."""
        with _boundary(f"part {number} of {key}"):
            response = await self._client.upload_part(
                Bucket=self._bucket, Key=self._key(key), UploadId=upload_id, PartNumber=number, Body=body)
        return str(response["ETag"])

    def open_part(self, key: str, upload_id: str, number: int, offset: int, part_size: int,
                  part_count: int) -> PartWriter:
        return StreamedPart(self, key, upload_id, number, offset, part_size, part_count)

    def part_buffer_bytes(self, part_size: int, part_count: int) -> int:
        # The S3 part filling, and those in flight.
        return (IN_FLIGHT + 1) * sub_parts(part_size, part_count)[1]

    async def complete_multipart(self, key: str, upload_id: str, parts: Sequence[CompletedPart]) -> ObjectInfo:
        total = sum(part.size for part in parts)
        if not parts:
            # S3 cannot complete a multipart upload without parts: an empty object is a plain put.
            with _boundary(f"object {key}"):
                await self._client.put_object(Bucket=self._bucket, Key=self._key(key), Body=b"")
            await self.abort_multipart(key, upload_id)
            return ObjectInfo(key, 0)
        try:
            with _boundary(f"multipart completion of {key}"):
                await self._client.complete_multipart_upload(
                    Bucket=self._bucket, Key=self._key(key), UploadId=upload_id,
                    MultipartUpload={"Parts": [{"PartNumber": number, "ETag": etag}
                                               for number, etag in s3_parts(parts)]})
        except NotFound:
            done = await self.stat(key)
            if done is not None and done.size == total:
                return done  # completed before: completing again is a no-op
            raise
        return ObjectInfo(key, total)

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        try:
            with _boundary(f"multipart abort of {key}"):
                await self._client.abort_multipart_upload(Bucket=self._bucket, Key=self._key(key),
                                                          UploadId=upload_id)
        except NotFound:
            return

    async def open_sequential(self, key: str, chunk_bytes: int = READ_CHUNK_BYTES) -> ChunkReader:
        return LoopChunkReader(self.read(key, chunk_bytes=chunk_bytes), asyncio.get_running_loop())

    async def open_random(self, key: str, size: int) -> RandomReader:
        return RangeFile.of_object(self, key, size, asyncio.get_running_loop())

    async def presign_get(self, key: str, ttl_seconds: int) -> str:
        with _boundary(f"presign of {key}"):
            url = await self._client.generate_presigned_url(
                "get_object", Params={"Bucket": self._bucket, "Key": self._key(key)}, ExpiresIn=ttl_seconds)
        return str(url)

    async def list_multipart(self, prefix: str) -> AsyncIterator[MultipartInfo]:
        strip = len(self.location.prefix)
        with _boundary("multipart listing"):
            paginator = self._client.get_paginator("list_multipart_uploads")
            async for page in paginator.paginate(Bucket=self._bucket, Prefix=self.location.prefix + prefix):
                for item in page.get("Uploads", []):
                    yield MultipartInfo(item["Key"][strip:], item["UploadId"], item["Initiated"])
