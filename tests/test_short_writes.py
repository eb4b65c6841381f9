"""Short writes and a full disk on the local store: never a part recorded with bytes missing; and copies into
fresh storage checked by size.

A file system may take part of a write without an error (tmpfs does when it fills up) or refuse it with
ENOSPC. Neither can be caused on demand on a real disk, so the store's own seam (`FileCalls`) injects them:
a short write really writes the first bytes of the request (through a buffered descriptor of the same file,
as the kernel would have) and reports that count; ENOSPC writes nothing. Each fault is tried at every write
call a part (or an object) makes, with O_DIRECT and with buffered writes.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from server.domain.caller import Caller
from server.domain.services import Services
from server.domain.upload_stream import Chunk, Finish, StreamMessage
from server.domain.uploads import NewUpload
from server.embedded import EmbeddedRedis
from server.model.errors import DataLoss, Unavailable
from server.model.locations import S3Location
from server.model.namespaces import Quota
from server.model.objects import ObjectInfo
from server.model.uploads import UploadState
from server.model.versions import VersionState
from server.storage import uploads as uploads_repo
from server.storage import versions as versions_repo
from server.storage.objects.local import LocalStore
from server.storage.objects.local_io import FileCalls
from server.storage.objects.routed import RoutedStore
from server.storage.objects.s3 import S3Store
from tests.conftest import BUCKET, create_database, redis_url
from tests.inprocess import in_process

MiB = 1 << 20
CALLER = Caller("short-writes")


class FaultyCalls(FileCalls):
    """Real file calls, except that chosen pwrite calls (counted from 0) are short or fail with ENOSPC."""

    def __init__(self, *, short: Callable[[int], bool] = lambda _: False, enospc_at: int | None = None,
                 direct: bool = True) -> None:
        self.short = short
        self.enospc_at = enospc_at
        self.direct = direct
        self.writes = 0
        self.short_writes = 0

    def open(self, path: Path, flags: int, mode: int = 0o644) -> int:
        if not self.direct and flags & getattr(os, "O_DIRECT", 0):
            raise OSError(errno.EINVAL, "no O_DIRECT here")  # what tmpfs answers
        return super().open(path, flags, mode)

    def pwrite(self, fd: int, data: memoryview, offset: int) -> int:
        index, self.writes = self.writes, self.writes + 1
        if index == self.enospc_at:
            raise OSError(errno.ENOSPC, "No space left on device")
        if len(data) > 1 and self.short(index):
            taken = len(data) // 3 + 1  # deliberately not a multiple of 4 KiB
            plain = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY)  # the same file, without O_DIRECT
            try:
                assert os.pwrite(plain, data[:taken], offset) == taken
            finally:
                os.close(plain)
            self.short_writes += 1
            return taken
        return super().pwrite(fd, data, offset)


async def write_part(store: LocalStore, key: str, data: bytes, piece: int = MiB + 7) -> str:
    upload_id = await store.create_multipart(key)
    writer = store.open_part(key, upload_id, 1, 0, 8 * MiB, 1)
    try:
        for start in range(0, len(data), piece):
            await writer.write(memoryview(data[start:start + piece]))
        await writer.commit()
    except BaseException:
        await writer.discard()
        raise
    return upload_id


def part_bytes(store: LocalStore, key: str, upload_id: str) -> bytes:
    return (store.root / ".multipart" / key / upload_id).read_bytes()


# 5 MiB and an unaligned tail: two O_DIRECT buffers, an aligned flush at commit, then the buffered tail.
PART = os.urandom(5 * MiB + 12345)


@pytest.fixture
async def local(tmp_path: Path) -> LocalStore:
    return await LocalStore(tmp_path / "objects").open()


@pytest.mark.parametrize("direct", [True, False], ids=["o_direct", "buffered"])
async def test_a_short_write_at_every_write_of_a_part_loses_no_byte(local: LocalStore, direct: bool) -> None:
    counting = FaultyCalls(direct=direct)
    local.calls = counting
    await write_part(local, "count/a", PART)
    writes = counting.writes
    assert writes >= 2
    for index in [*range(writes), -1]:  # each write in turn, then every write at once
        faulty = FaultyCalls(short=(lambda i, at=index: at in (i, -1)), direct=direct)
        local.calls = faulty
        key = f"short/{index}"
        upload_id = await write_part(local, key, PART)
        assert faulty.short_writes >= 1 and faulty.writes > writes
        assert part_bytes(local, key, upload_id) == PART, f"short write at call {index}"


@pytest.mark.parametrize("direct", [True, False], ids=["o_direct", "buffered"])
async def test_enospc_at_every_write_of_a_part_fails_it(local: LocalStore, direct: bool) -> None:
    counting = FaultyCalls(direct=direct)
    local.calls = counting
    await write_part(local, "count/b", PART)
    for index in range(counting.writes):
        local.calls = FaultyCalls(enospc_at=index, direct=direct)
        with pytest.raises(Unavailable) as raised:
            await write_part(local, f"full/{index}", PART)
        assert raised.value.reason == "STORE_FULL" and "No space left" in raised.value.message
    # A write that takes nothing and says nothing is a full disk too, not a success.
    local.calls = FaultyCalls(direct=direct)
    local.calls.pwrite = lambda fd, data, offset: 0  # type: ignore[method-assign]
    with pytest.raises(Unavailable) as raised:
        await write_part(local, "full/zero", PART)
    assert raised.value.reason == "STORE_FULL"


async def chunks(data: bytes, size: int = MiB + 3) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


async def test_put_and_copy_check_every_write(local: LocalStore) -> None:
    data = os.urandom(3 * MiB + 5)
    local.calls = FaultyCalls(short=lambda _: True)
    assert (await local.put("objects/a", chunks(data))).size == len(data)
    assert (local.root / "objects/a").read_bytes() == data
    local.calls = FaultyCalls(enospc_at=2)
    with pytest.raises(Unavailable) as raised:
        await local.put("objects/b", chunks(data))
    assert raised.value.reason == "STORE_FULL"
    assert await local.stat("objects/b") is None and list((local.root / ".tmp").iterdir()) == []
    # The copy a hard link cannot make (across file systems) goes through the same checked writes.
    local.calls = FaultyCalls(short=lambda _: True)
    target = local.root / ".tmp" / "copied"
    await asyncio.to_thread(local._copy_bytes, local.root / "objects/a", target)
    assert target.read_bytes() == data


# --- through the upload stream and the pipeline ----------------------------------------------------------


@pytest.fixture
async def services(stack_envs: dict[str, dict[str, str]], postgres: object, redis_server: EmbeddedRedis,
                   tmp_path: Path) -> AsyncIterator[Services]:
    env = dict(stack_envs["file"], QUARRY_DATABASE_URL=await create_database(postgres, "short_writes"),  # type: ignore[arg-type]
               QUARRY_REDIS_URL=redis_url(redis_server, 11), QUARRY_STORAGE_URL=f"file://{tmp_path / 'objects'}")
    async with in_process(env) as built:
        await built.namespaces.create(CALLER, CALLER.namespace, Quota(), None)  # an operator makes namespaces
        yield built


async def messages(data: bytes, *, finish: bool = True, piece: int = MiB) -> AsyncIterator[StreamMessage]:
    for start in range(0, len(data), piece):
        yield Chunk(data[start:start + piece])
    if finish:
        yield Finish()


async def nothing(_: object) -> None:
    return None


async def promote(services: Services, upload_id: uuid.UUID) -> bytes:
    """Validate and promote an auto-commit upload in this process; the READY version's bytes."""
    await services.pipeline.validate_upload(upload_id)
    async with services.db.connection() as connection:
        upload = await uploads_repo.get(connection, upload_id)
    assert upload is not None and upload.state == UploadState.VALIDATED and upload.version_id is not None
    await services.pipeline.promote_version(upload.version_id)
    async with services.db.connection() as connection:
        version = await versions_repo.get(connection, upload.version_id)
        files = await versions_repo.files(connection, upload.version_id)
    assert version is not None and version.state == VersionState.READY and len(files) == 1
    return b"".join([chunk async for chunk in services.uploads.store.read(files[0].object_key)])


def local_store(services: Services) -> LocalStore:
    """The local store under the routed one (which sends inline and external keys elsewhere)."""
    routed = services.uploads.store
    assert isinstance(routed, RoutedStore) and isinstance(routed.store, LocalStore)
    return routed.store


async def test_short_writes_everywhere_still_make_the_version_the_client_sent(services: Services) -> None:
    store = local_store(services)
    faulty = FaultyCalls(short=lambda _: True)
    store.calls = faulty
    data = os.urandom(37 * MiB + 999)  # three 16 MiB parts, the last short; no sha256 declared
    result = await services.upload_stream.write(
        CALLER, NewUpload("short", "s.bin", declared_size=len(data), auto_commit=True), 0, messages(data), nothing)
    assert result.upload.state == UploadState.STAGED and faulty.short_writes > 10
    version_bytes = await promote(services, result.upload.id)
    assert hashlib.sha256(version_bytes).hexdigest() == hashlib.sha256(data).hexdigest()


async def test_enospc_mid_upload_keeps_only_whole_parts_and_the_upload_resumes(services: Services) -> None:
    store = local_store(services)
    data = os.urandom(40 * MiB)
    counting = FaultyCalls()
    store.calls = counting
    probe = await services.upload_stream.write(
        CALLER, NewUpload("full", "probe.bin", declared_size=len(data)), 0, messages(data), nothing)
    writes = counting.writes
    for index in range(0, writes, 2):
        store.calls = FaultyCalls(enospc_at=index, short=lambda i: i % 3 == 0)
        upload, _ = await services.uploads.create(CALLER, "", NewUpload(f"full-{index}", "f.bin",
                                                                        declared_size=len(data), auto_commit=True))
        with pytest.raises(Unavailable) as raised:
            await services.upload_stream.write(CALLER, upload.name, 0, messages(data), nothing)
        assert raised.value.reason == "STORE_FULL"
        async with services.db.connection() as connection:
            current = await uploads_repo.get(connection, upload.id)
        assert current is not None and current.state == UploadState.OPEN
        # Every part recorded holds exactly the client's bytes.
        held = (store.root / ".multipart" / upload.staging_key / str(current.store_upload_id)).read_bytes()
        for part in current.parts:
            assert held[part.offset:part.offset + part.size] == data[part.offset:part.offset + part.size]
        assert current.committed_bytes == sum(p.size for p in current.parts)
        assert current.committed_bytes % upload.part_size == 0 and current.committed_bytes < len(data)
        # Space again: the upload resumes from what was committed and becomes the client's file.
        store.calls = FaultyCalls()
        offset = current.committed_bytes
        result = await services.upload_stream.write(CALLER, upload.name, offset, messages(data[offset:]), nothing)
        assert result.upload.state == UploadState.STAGED
        assert hashlib.sha256(await promote(services, upload.id)).digest() == hashlib.sha256(data).digest()
    assert probe.upload.state == UploadState.STAGED


# --- promotion copies are checked by size --------------------------------------------------------------------


async def _validated(services: Services, name: str, data: bytes) -> uuid.UUID:
    """An auto-commit upload of `data`, validated (its version PENDING promotion); the version's id."""
    upload, _ = await services.uploads.create(CALLER, "", NewUpload(name, "c.bin", declared_size=len(data),
                                                                    auto_commit=True))
    await services.upload_stream.write(CALLER, upload.name, 0, messages(data), nothing)
    await services.pipeline.validate_upload(upload.id)
    async with services.db.connection() as connection:
        validated = await uploads_repo.get(connection, upload.id)
    assert validated is not None and validated.version_id is not None
    return validated.version_id


async def test_a_fresh_object_of_the_wrong_size_is_copied_again(services: Services) -> None:
    store = services.uploads.store
    data = os.urandom(3 * MiB)
    sha = hashlib.sha256(data).hexdigest()
    version_id = await _validated(services, "recopy", data)
    async with services.db.connection() as connection:
        version = await versions_repo.get(connection, version_id)
    assert version is not None
    key = f"fresh/{CALLER.namespace}/{version.dataset_id}/objects/{sha}"
    await store.put(key, chunks(data[:MiB]))  # what a copy cut short would have left under the content key
    await services.pipeline.promote_version(version_id)
    async with services.db.connection() as connection:
        assert (await versions_repo.get(connection, version_id)).state == VersionState.READY  # type: ignore[union-attr]
    assert hashlib.sha256(b"".join([c async for c in store.read(key)])).hexdigest() == sha


async def test_staged_bytes_changed_after_validation_fail_the_version(services: Services) -> None:
    store = services.uploads.store
    data = os.urandom(2 * MiB)
    version_id = await _validated(services, "changed", data)
    async with services.db.connection() as connection:
        [upload] = await uploads_repo.by_version(connection, version_id)
    await store.put(upload.staging_key, chunks(data + b"tampered"))  # the staged object is not what was validated
    with pytest.raises(DataLoss) as lost:
        await services.pipeline.promote_version(version_id)
    assert lost.value.reason == "STAGED_OBJECT_CHANGED" and not lost.value.retryable
    await services.pipeline.promotion_gave_up(version_id, lost.value)  # what the worker does with a final error
    async with services.db.connection() as connection:
        version = await versions_repo.get(connection, version_id)
    assert version is not None and version.state == VersionState.FAILED
    assert version.failure is not None and version.failure.reason == "STAGED_OBJECT_CHANGED"


class _ShortCopies(S3Store):
    """The S3 store, except that a copy's destination reads back a byte short (a copy that went wrong)."""

    async def stat(self, key: str) -> ObjectInfo | None:
        found = await super().stat(key)
        if found is not None and key.endswith("/copy"):
            return ObjectInfo(key, found.size - 1)
        return found


async def test_an_s3_copy_of_the_wrong_size_is_refused_and_removed(moto_endpoint: str) -> None:
    location = S3Location(bucket=BUCKET, prefix=f"short-copies-{uuid.uuid4().hex[:8]}/", endpoint=moto_endpoint,
                          region="us-east-1")
    store = await _ShortCopies(location, "test", "test").open()
    try:
        await store.put("a/source", chunks(os.urandom(MiB)))
        with pytest.raises(Unavailable) as refused:
            await store.copy("a/source", "a/copy")
        assert refused.value.reason == "COPY_INCOMPLETE" and refused.value.retryable
        assert await S3Store.stat(store, "a/copy") is None  # not left behind
        assert (await store.copy("a/source", "a/other")).size == MiB  # a copy of the right size goes through
    finally:
        await store.close()
