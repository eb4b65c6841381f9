"""One behaviour suite for both object stores: local directory (aiofiles) and S3 (moto over HTTP)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import boto3
import pytest

from server.model.errors import FailedPrecondition, InvalidArgument, NotFound, NotSupported, Unavailable
from server.model.objects import CompletedPart, ObjectStore
from server.storage.objects.local import LocalStore
from server.storage.objects.s3 import MULTIPART_THRESHOLD, S3Store
from tests.support import refused_port

MiB = 1 << 20


@pytest.fixture(params=["file", "s3"])
async def store(request: pytest.FixtureRequest, stores: dict[str, ObjectStore]) -> ObjectStore:
    return stores[request.param]


@pytest.fixture
def prefix() -> str:
    return f"test/{uuid.uuid4().hex}/"


async def chunks_of(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


async def read_all(store: ObjectStore, key: str, offset: int = 0, length: int | None = None,
                   chunk_bytes: int = 1 << 20) -> bytes:
    return b"".join([c async for c in store.read(key, offset, length, chunk_bytes)])


async def test_put_then_read_streams_in_chunks(store: ObjectStore, prefix: str) -> None:
    data = os.urandom(3 * MiB + 17)
    info = await store.put(prefix + "a", chunks_of(data))
    assert info.size == len(data)
    sizes = [len(c) async for c in store.read(prefix + "a", chunk_bytes=MiB)]
    assert max(sizes) <= MiB and sum(sizes) == len(data)
    assert await read_all(store, prefix + "a") == data


async def test_put_large_object_goes_through_multipart(stores: dict[str, ObjectStore], prefix: str,
                                                        moto_endpoint: str) -> None:
    # Only S3 has multipart puts (the local store writes a temporary file and renames it). S3 tells: the ETag of
    # an object assembled from N parts ends in "-N", that of a single PUT is a plain MD5.
    store = stores["s3"]
    assert isinstance(store, S3Store)
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                      region_name="us-east-1")

    def etag(key: str) -> str:
        return str(s3.head_object(Bucket=store.location.bucket, Key=store.location.prefix + key)["ETag"]).strip('"')

    data = os.urandom(MULTIPART_THRESHOLD + MiB + 3)
    await store.put(prefix + "big", chunks_of(data, MiB))
    assert etag(prefix + "big").endswith("-2")  # one threshold-sized part, then the rest
    assert hashlib.sha256(await read_all(store, prefix + "big")).digest() == hashlib.sha256(data).digest()
    small = os.urandom(MULTIPART_THRESHOLD - 1)
    await store.put(prefix + "small", chunks_of(small, MiB))
    assert etag(prefix + "small") == hashlib.md5(small).hexdigest()


async def test_empty_object(store: ObjectStore, prefix: str) -> None:
    await store.put(prefix + "empty", chunks_of(b""))
    assert (await store.stat(prefix + "empty")).size == 0  # type: ignore[union-attr]
    assert await read_all(store, prefix + "empty") == b""


async def test_range_reads(store: ObjectStore, prefix: str) -> None:
    data = os.urandom(100_000)
    await store.put(prefix + "r", chunks_of(data))
    assert await read_all(store, prefix + "r", 10, 100) == data[10:110]
    assert await read_all(store, prefix + "r", 99_990) == data[99_990:]
    assert await read_all(store, prefix + "r", 0, 0) == b""
    assert await read_all(store, prefix + "r", 5, 20_000, chunk_bytes=4096) == data[5:20_005]


async def test_modified_time(store: ObjectStore, prefix: str) -> None:
    from datetime import UTC, datetime, timedelta

    await store.put(prefix + "m", chunks_of(b"x"))
    modified = await store.modified(prefix + "m")
    assert modified is not None and abs(datetime.now(UTC) - modified) < timedelta(minutes=1)
    assert await store.modified(prefix + "none") is None


async def test_missing_objects(store: ObjectStore, prefix: str) -> None:
    assert await store.stat(prefix + "nope") is None
    assert not await store.exists(prefix + "nope")
    with pytest.raises(NotFound) as raised:
        await read_all(store, prefix + "nope")
    assert raised.value.reason == "OBJECT_NOT_FOUND"
    with pytest.raises(NotFound) as raised:
        await store.copy(prefix + "nope", prefix + "other")
    assert raised.value.reason == "OBJECT_NOT_FOUND"
    assert not await store.exists(prefix + "other")
    await store.delete(prefix + "nope")  # deleting what is not there is fine


async def test_multipart_parts_in_any_order(store: ObjectStore, prefix: str) -> None:
    part = 5 * MiB
    data = os.urandom(2 * part + 1234)
    key = prefix + "mp"
    upload_id = await store.create_multipart(key)
    pieces = [(1, 0, data[:part]), (3, 2 * part, data[2 * part:]), (2, part, data[part:2 * part])]
    etags = {}
    for number, offset, piece in reversed(pieces):
        etags[number] = await store.upload_part(key, upload_id, number, offset, piece)
    assert not await store.exists(key)  # nothing visible before completion
    parts = [CompletedPart(n, etags[n], len(p)) for n, _, p in sorted(pieces)]
    info = await store.complete_multipart(key, upload_id, parts)
    assert info.size == len(data)
    assert await read_all(store, key) == data
    # Completing again is a no-op, not an error (a retried job must be able to do it).
    assert (await store.complete_multipart(key, upload_id, parts)).size == len(data)


async def test_list_multipart(store: ObjectStore, prefix: str) -> None:
    first = await store.create_multipart(prefix + "one")
    second = await store.create_multipart(prefix + "two")
    listed = {(m.key, m.upload_id) async for m in store.list_multipart(prefix)}
    assert listed == {(prefix + "one", first), (prefix + "two", second)}
    await store.abort_multipart(prefix + "one", first)
    await store.abort_multipart(prefix + "two", second)
    assert [m async for m in store.list_multipart(prefix)] == []


async def test_multipart_abort_leaves_nothing(store: ObjectStore, prefix: str) -> None:
    key = prefix + "aborted"
    upload_id = await store.create_multipart(key)
    await store.upload_part(key, upload_id, 1, 0, os.urandom(5 * MiB))
    await store.abort_multipart(key, upload_id)
    await store.abort_multipart(key, upload_id)  # twice is fine
    assert not await store.exists(key)
    # S3 answers NoSuchUpload; moto answers 500. Either way the aborted upload cannot come back.
    with pytest.raises((NotFound, Unavailable)) as raised:
        await store.complete_multipart(key, upload_id, [CompletedPart(1, "x", 5 * MiB)])
    if store.kind == "file":
        assert raised.value.reason == "MULTIPART_NOT_FOUND"
        with pytest.raises(NotFound) as raised:
            await store.upload_part(key, upload_id, 1, 0, b"late")
        assert raised.value.reason == "MULTIPART_NOT_FOUND"
        writer = store.open_part(key, upload_id, 1, 0, 5 * MiB, part_count=1)
        with pytest.raises(NotFound) as raised:
            await writer.write(memoryview(os.urandom(5 * MiB)))
            await writer.commit()
        assert raised.value.reason == "MULTIPART_NOT_FOUND"
    assert not await store.exists(key)
    assert [m async for m in store.list_multipart(key)] == []


@pytest.mark.parametrize("store", ["file"], indirect=True)  # S3 checks each part's ETag instead
async def test_completing_with_more_bytes_than_were_written_publishes_nothing(store: ObjectStore,
                                                                               prefix: str) -> None:
    key = prefix + "short"
    upload_id = await store.create_multipart(key)
    etag = await store.upload_part(key, upload_id, 1, 0, os.urandom(MiB))
    with pytest.raises(FailedPrecondition) as raised:
        await store.complete_multipart(key, upload_id, [CompletedPart(1, etag, MiB), CompletedPart(2, "2", 10)])
    assert raised.value.reason == "MULTIPART_SHORT"
    assert not await store.exists(key)
    await store.abort_multipart(key, upload_id)


async def test_multipart_without_parts_is_an_empty_object(store: ObjectStore, prefix: str) -> None:
    key = prefix + "none"
    upload_id = await store.create_multipart(key)
    assert (await store.complete_multipart(key, upload_id, [])).size == 0
    assert await read_all(store, key) == b""


async def test_copy_and_delete(store: ObjectStore, prefix: str) -> None:
    data = os.urandom(300_000)
    await store.put(prefix + "src", chunks_of(data))
    info = await store.copy(prefix + "src", prefix + "dir/dst")
    assert info.size == len(data)
    await store.delete(prefix + "src")
    assert not await store.exists(prefix + "src")
    assert await read_all(store, prefix + "dir/dst") == data
    await store.delete(prefix + "dir/dst")
    assert await store.stat(prefix + "dir/dst") is None


async def test_list_by_prefix(store: ObjectStore, prefix: str) -> None:
    for name in ("x/1", "x/2", "y/1"):
        await store.put(prefix + name, chunks_of(b"data"))
    listed = sorted([o.key async for o in store.list_objects(prefix + "x/")])
    assert listed == [prefix + "x/1", prefix + "x/2"]
    assert {o.size async for o in store.list_objects(prefix)} == {4}


async def test_keys_cannot_escape(store: ObjectStore, prefix: str) -> None:
    for key in ("../etc/passwd", "/abs", "a//b", "a/./b", ""):
        with pytest.raises(InvalidArgument) as raised:
            await store.put(key, chunks_of(b"x"))
        assert raised.value.reason == "INVALID_OBJECT_KEY", key
    assert [o async for o in store.list_objects(prefix)] == []


async def test_presigned_urls(store: ObjectStore, prefix: str) -> None:
    await store.put(prefix + "p", chunks_of(b"hello"))
    if store.kind == "file":
        with pytest.raises(NotSupported):
            await store.presign_get(prefix + "p", 60)
        return
    url = await store.presign_get(prefix + "p", 60)
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        assert await response.read() == b"hello"


async def test_ping_answers_only_while_the_store_is_usable(store: ObjectStore, tmp_path: Path) -> None:
    await store.ping()
    # The same kind of store, but gone: a local directory removed (as by an unmount), an S3 endpoint where
    # nothing listens.
    if isinstance(store, LocalStore):
        gone: ObjectStore = await LocalStore(tmp_path / "store").open()
        shutil.rmtree(tmp_path / "store")
    else:
        assert isinstance(store, S3Store)
        gone = await S3Store(dataclasses.replace(store.location, endpoint=f"http://127.0.0.1:{refused_port()}"),
                             "test", "test").open()
    try:
        with pytest.raises(Unavailable) as raised:
            await gone.ping()
        assert (raised.value.reason, raised.value.retryable) == ("STORE_UNAVAILABLE", True)
    finally:
        await gone.close()


@pytest.mark.parametrize("store", ["s3"], indirect=True)
async def test_an_s3_refusal_is_a_store_error(store: ObjectStore, prefix: str) -> None:
    # A bucket that does not exist: S3 refuses (NoSuchBucket, a 4xx that retrying will not fix).
    assert isinstance(store, S3Store)
    missing = await S3Store(dataclasses.replace(store.location, bucket="no-such-bucket"), "test", "test").open()
    try:
        with pytest.raises(Unavailable) as raised:
            await missing.put(prefix + "x", chunks_of(b"x"))
        assert raised.value.reason == "STORE_ERROR"
        assert "NoSuchBucket" in raised.value.message
    finally:
        await missing.close()


async def test_part_writers_take_pieces(store: ObjectStore, prefix: str) -> None:
    part_size = 20 * MiB  # on S3: two streamed S3 parts of 10 MiB each
    data = os.urandom(part_size + 3 * MiB)
    key = prefix + "streamed"
    upload_id = await store.create_multipart(key)
    etags = []
    for number, offset in ((2, part_size), (1, 0)):
        writer = store.open_part(key, upload_id, number, offset, part_size, part_count=2)
        piece = data[offset:offset + part_size]
        for start in range(0, len(piece), 3 * MiB + 1):
            await writer.write(memoryview(piece)[start:start + 3 * MiB + 1])
        assert writer.size == len(piece)
        etags.append(CompletedPart(number, await writer.commit(), len(piece)))
    # A discarded writer (a broken stream's part in flight) counts for nothing.
    dropped = store.open_part(key, upload_id, 3, 2 * part_size, part_size, part_count=3)
    await dropped.write(memoryview(os.urandom(MiB)))
    await dropped.discard()
    info = await store.complete_multipart(key, upload_id, sorted(etags, key=lambda p: p.number))
    assert info.size == len(data)
    assert await read_all(store, key) == data
