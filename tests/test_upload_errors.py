"""Bad input to UploadService: a precise status and reason, and nothing left behind."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Iterable
from pathlib import Path

import asyncpg
import google_crc32c
import grpc
import pytest
from grpc import aio
from quarry.v1 import upload_pb2
from quarry.v1 import upload_service_pb2 as pb

from server.model.objects import ObjectStore
from server.storage.objects.local import LocalStore
from tests.conftest import Env
from tests.support import (
    ServerHandle,
    error_info,
    field_violations,
    open_api,
    start_server,
    tampered_page_token,
    upload_blocking,
)
from tests.uploading import (
    MiB,
    chunk_messages,
    create_request,
    one_call_messages,
    resume_messages,
    stream_of,
    upload_bytes,
)

NOTHING = {"rows": 0, "objects": 0, "multipart": 0, "versions": 0}


async def fails(call: Awaitable[object], code: grpc.StatusCode, reason: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        await call
    assert raised.value.code() == code, raised.value  # type: ignore[attr-defined]
    assert error_info(raised.value)[0] == reason, raised.value
    return raised.value


def upload_call(env: Env, messages: Iterable[pb.UploadRequest]) -> Awaitable[pb.UploadResponse]:
    """An Upload stream from a plain generated client; the blocking one, which reports the server's refusal of a
    stream it is still sending (grpc.aio may report its own failed write instead)."""
    return upload_blocking(env.server.address, env.namespace, messages, token=env.api.token)


def header(dataset: str = "ds", path: str = "f.bin", size: int | None = None, sha: str = "") -> pb.UploadRequest:
    return pb.UploadRequest(header=pb.UploadHeader(create=create_request(dataset, path, size, sha)))


async def test_unknown_upload(env: Env) -> None:
    name = f"namespaces/{env.namespace}/uploads/{uuid.uuid4()}"
    await fails(env.api.uploads.GetUpload(pb.GetUploadRequest(name=name)), grpc.StatusCode.NOT_FOUND,
                "UPLOAD_NOT_FOUND")
    await fails(upload_call(env, resume_messages(name, 0, b"abc")), grpc.StatusCode.NOT_FOUND, "UPLOAD_NOT_FOUND")
    await fails(env.api.uploads.CancelUpload(pb.CancelUploadRequest(name=name)), grpc.StatusCode.NOT_FOUND,
                "UPLOAD_NOT_FOUND")
    await fails(env.api.uploads.CompleteUpload(pb.CompleteUploadRequest(name=name)), grpc.StatusCode.NOT_FOUND,
                "UPLOAD_NOT_FOUND")
    error = await fails(env.api.uploads.GetUpload(pb.GetUploadRequest(name="uploads/x")),
                        grpc.StatusCode.INVALID_ARGUMENT, "INVALID_NAME")
    assert field_violations(error) == ["name"]
    assert await env.leftovers() == NOTHING


async def test_writing_a_finished_or_cancelled_upload(env: Env) -> None:
    staged = (await upload_bytes(env.api, "done", "d.bin", b"hello")).upload
    await fails(upload_call(env, resume_messages(staged.name, 5, b"more")), grpc.StatusCode.FAILED_PRECONDITION,
                "UPLOAD_FINISHED")
    await env.api.uploads.CancelUpload(pb.CancelUploadRequest(name=staged.name))
    await fails(upload_call(env, resume_messages(staged.name, 0, b"again")), grpc.StatusCode.FAILED_PRECONDITION,
                "UPLOAD_CANCELLED")
    await fails(env.api.uploads.CompleteUpload(pb.CompleteUploadRequest(name=staged.name)),
                grpc.StatusCode.FAILED_PRECONDITION, "UPLOAD_CANCELLED")
    assert await env.leftovers() == {"rows": 1, "objects": 0, "multipart": 0, "versions": 0}


async def test_wrong_offset_names_the_expected_one(env: Env) -> None:
    opened = (await env.api.uploads.CreateUpload(create_request("off", "o.bin", 100))).upload
    error = await fails(upload_call(env, resume_messages(opened.name, 7, b"x" * 93)),
                        grpc.StatusCode.FAILED_PRECONDITION, "WRONG_OFFSET")
    assert error_info(error)[1]["expected_offset"] == "0"
    assert "expected 0" in (error.details() or "")
    # A header that creates an upload must start at 0.
    bad = pb.UploadRequest(header=pb.UploadHeader(create=create_request("off", "p.bin", 10), write_offset=3))
    await fails(upload_call(env, [bad]), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    current = (await env.api.uploads.GetUpload(pb.GetUploadRequest(name=opened.name))).upload
    assert current.committed_bytes == 0 and not current.parts
    assert await env.leftovers() == {"rows": 1, "objects": 0, "multipart": 1, "versions": 0}


async def test_chunk_over_the_max_chunk_size(env: Env) -> None:
    too_big = pb.UploadRequest(chunk=pb.UploadChunk(data=b"\0" * (8 * MiB + 1)))
    error = await fails(upload_call(env, [header(size=9 * MiB), too_big]), grpc.StatusCode.INVALID_ARGUMENT,
                        "CHUNK_TOO_LARGE")
    assert field_violations(error) == ["chunk.data"]
    assert await env.leftovers() == NOTHING


async def test_message_over_the_max_message_size(env: Env) -> None:
    # Bigger than the server accepts at all: gRPC itself refuses it.
    huge = pb.UploadRequest(chunk=pb.UploadChunk(data=b"\0" * (9 * MiB)))
    with pytest.raises(grpc.RpcError) as raised:
        await upload_call(env, [header(size=9 * MiB), huge])
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The server learns of it by its handler being cancelled, just after the client hears: give it a moment.
    for _ in range(50):
        if await env.leftovers() == NOTHING:
            break
        await asyncio.sleep(0.1)
    assert await env.leftovers() == NOTHING


async def test_crc_mismatch(env: Env) -> None:
    good = list(chunk_messages(os.urandom(MiB)))
    bad = pb.UploadRequest(chunk=pb.UploadChunk(data=b"abc", crc32c=12345))
    error = await fails(upload_call(env, [header(size=MiB + 3), *good, bad]), grpc.StatusCode.DATA_LOSS,
                        "CHECKSUM_MISMATCH")
    assert error_info(error)[1]["offset"] == str(MiB)
    assert await env.leftovers() == NOTHING


async def test_size_overrun(env: Env) -> None:
    await fails(upload_call(env, [header(size=10), *chunk_messages(b"x" * 11)]), grpc.StatusCode.OUT_OF_RANGE,
                "SIZE_EXCEEDED")
    assert await env.leftovers() == NOTHING


async def test_short_at_finish(env: Env) -> None:
    messages = [header(size=10), *chunk_messages(b"x" * 9), pb.UploadRequest(finish=pb.UploadFinish())]
    error = await fails(upload_call(env, messages), grpc.StatusCode.FAILED_PRECONDITION, "SIZE_SHORT")
    assert error_info(error)[1]["declared_size"] == "10"
    assert await env.leftovers() == NOTHING


@pytest.mark.parametrize("name", ["Upper", "", "-dash-first", "a" * 64, "has space", "slash/inside", "ünï"])
async def test_invalid_dataset_name(env: Env, name: str) -> None:
    error = await fails(env.api.uploads.CreateUpload(create_request(name, "f.bin")),
                        grpc.StatusCode.INVALID_ARGUMENT, "INVALID_DATASET_NAME")
    assert field_violations(error) == ["upload.dataset"]
    await fails(upload_call(env, [header(dataset=name), *chunk_messages(b"x")]), grpc.StatusCode.INVALID_ARGUMENT,
                "INVALID_DATASET_NAME")
    assert await env.leftovers() == NOTHING


@pytest.mark.parametrize("path", ["../x", "a/../../x", "/abs", "", "nul\x00byte", "x" * 1025, "a//b", "./a", "dir/",
                                  "back\\slash"])
async def test_invalid_path(env: Env, path: str) -> None:
    error = await fails(env.api.uploads.CreateUpload(create_request("ds", path)),
                        grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PATH")
    assert field_violations(error) == ["upload.path"]
    await fails(upload_call(env, [header(path=path), *chunk_messages(b"x")]), grpc.StatusCode.INVALID_ARGUMENT,
                "INVALID_PATH")
    assert await env.leftovers() == NOTHING


async def test_header_missing(env: Env) -> None:
    await fails(upload_call(env, chunk_messages(b"data")), grpc.StatusCode.INVALID_ARGUMENT, "HEADER_MISSING")
    await fails(upload_call(env, []), grpc.StatusCode.INVALID_ARGUMENT, "HEADER_MISSING")
    await fails(upload_call(env, [pb.UploadRequest(header=pb.UploadHeader())]), grpc.StatusCode.INVALID_ARGUMENT,
                "HEADER_MISSING")
    twice = [header(size=2), *chunk_messages(b"a"), header(size=2)]
    await fails(upload_call(env, twice), grpc.StatusCode.INVALID_ARGUMENT, "HEADER_REPEATED")
    assert await env.leftovers() == NOTHING


async def test_message_after_finish(env: Env) -> None:
    messages = [header(size=2), *chunk_messages(b"ab"), pb.UploadRequest(finish=pb.UploadFinish()),
                *chunk_messages(b"c")]
    await fails(upload_call(env, messages), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert await env.leftovers() == NOTHING


async def test_bad_declarations(env: Env) -> None:
    await fails(env.api.uploads.CreateUpload(create_request("ds", "f", 10, "XYZ")),
                grpc.StatusCode.INVALID_ARGUMENT, "INVALID_SHA256")
    await fails(env.api.uploads.CreateUpload(create_request("ds", "f", -1)), grpc.StatusCode.INVALID_ARGUMENT,
                "INVALID_ARGUMENT")
    await fails(env.api.uploads.CreateUpload(create_request("ds", "f", 2 << 40)), grpc.StatusCode.RESOURCE_EXHAUSTED,
                "UPLOAD_TOO_LARGE")
    data = b"payload"
    wrong = hashlib.sha256(b"other").hexdigest()
    messages = [header(size=len(data), sha=hashlib.sha256(data).hexdigest()), *chunk_messages(data),
                pb.UploadRequest(finish=pb.UploadFinish(sha256=wrong))]
    await fails(upload_call(env, messages), grpc.StatusCode.DATA_LOSS, "CHECKSUM_MISMATCH")
    assert await env.leftovers() == NOTHING


async def test_another_namespace_is_refused(env: Env) -> None:
    request = create_request("ds", "f.bin")
    request.parent = "namespaces/someone-else"
    await fails(env.api.uploads.CreateUpload(request), grpc.StatusCode.PERMISSION_DENIED, "NAMESPACE_NOT_GRANTED")
    mine = (await env.api.uploads.CreateUpload(create_request("ds", "f.bin"))).upload
    stranger = open_api(env.server.address)
    await fails(stranger.uploads.GetUpload(pb.GetUploadRequest(name=mine.name)), grpc.StatusCode.PERMISSION_DENIED,
                "NAMESPACE_NOT_GRANTED")
    await stranger.channel.close()


async def test_complete_with_missing_parts(env: Env) -> None:
    size = 40 * MiB
    opened = (await env.api.uploads.CreateUpload(create_request("gap", "g.bin", size))).upload
    part = opened.part_size_bytes
    await env.api.uploads.Upload(stream_of(resume_messages(opened.name, part, b"\1" * part, finish=False)))
    error = await fails(env.api.uploads.CompleteUpload(pb.CompleteUploadRequest(name=opened.name)),
                        grpc.StatusCode.FAILED_PRECONDITION, "INCOMPLETE_UPLOAD")
    assert error_info(error)[1]["missing_part"] == "1"
    # Writing part 2 again is refused: it is already there.
    await fails(upload_call(env, resume_messages(opened.name, part, b"\1" * part)),
                grpc.StatusCode.FAILED_PRECONDITION, "WRONG_OFFSET")
    # A stream from 0 that runs into part 2 commits part 1, then stops rather than write over part 2.
    error = await fails(upload_call(env, resume_messages(opened.name, 0, b"\2" * (2 * part), finish=False)),
                        grpc.StatusCode.FAILED_PRECONDITION, "PART_ALREADY_WRITTEN")
    assert error_info(error)[1]["part_number"] == "2"
    current = (await env.api.uploads.GetUpload(pb.GetUploadRequest(name=opened.name))).upload
    assert [p.part_number for p in current.parts] == [1, 2] and current.committed_bytes == 2 * part
    assert {p.crc32c for p in current.parts if p.part_number == 2} == {google_crc32c.value(b"\1" * part)}


async def test_bad_list_requests(env: Env) -> None:
    await fails(env.api.uploads.ListUploads(pb.ListUploadsRequest(filter="colour = red")),
                grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FILTER")
    await fails(env.api.uploads.ListUploads(pb.ListUploadsRequest(filter="state = SHINY")),
                grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FILTER")
    await fails(env.api.uploads.ListUploads(pb.ListUploadsRequest(filter="state >")),
                grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FILTER")
    for _ in range(3):
        await env.api.uploads.CreateUpload(create_request("ds", "f.bin"))
    page = await env.api.uploads.ListUploads(pb.ListUploadsRequest(page_size=1))
    token = page.next_page_token
    tampered = tampered_page_token(token)
    await fails(env.api.uploads.ListUploads(pb.ListUploadsRequest(page_size=1, page_token=tampered)),
                grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN")
    await fails(env.api.uploads.ListUploads(pb.ListUploadsRequest(page_size=1, page_token="garbage!")),
                grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN")
    await fails(env.api.uploads.ListUploads(pb.ListUploadsRequest(page_size=1, page_token=token,
                                                                  filter="state = OPEN")),
                grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN")
    await fails(env.api.uploads.ListUploads(pb.ListUploadsRequest(page_size=-1)),
                grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_SIZE")


@pytest.fixture(scope="module")
def limited_server(stack_envs: dict[str, dict[str, str]], tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    env = dict(stack_envs["file"], QUARRY_MAX_OPEN_UPLOADS="3", QUARRY_UPLOAD_EXPIRY_SECONDS="2",
               QUARRY_MAX_UPLOAD_BYTES=str(20 * MiB))
    handle = start_server(env, tmp_path_factory.mktemp("limited"), "limited", "file")
    yield handle
    handle.process.stop()


async def test_limits(limited_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    api = open_api(limited_server.address)
    try:
        opened = [(await api.uploads.CreateUpload(create_request("lim", f"{i}.bin", 5))).upload for i in range(3)]
        with pytest.raises(aio.AioRpcError) as raised:
            await api.uploads.CreateUpload(create_request("lim", "x.bin", 5))
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_info(raised.value)[0] == "TOO_MANY_OPEN_UPLOADS"
        # An upload past its expiry takes no more bytes. (The expiry is what is under test: let it pass.)
        await asyncio.sleep(2.5)
        with pytest.raises(aio.AioRpcError) as raised:
            await api.uploads.Upload(stream_of(resume_messages(opened[0].name, 0, b"12345")))
        assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(raised.value)[0] == "UPLOAD_EXPIRED"
        for upload in opened:
            try:
                await api.uploads.CancelUpload(pb.CancelUploadRequest(name=upload.name))
            except aio.AioRpcError as exc:
                # The session worker's sweep may have expired it first: then it no longer counts as open.
                reason, metadata = error_info(exc)
                assert (reason, metadata.get("state")) == ("UPLOAD_NOT_CANCELLABLE", "EXPIRED"), error_info(exc)
        # Without a declared size the limit applies as the bytes arrive.
        messages = one_call_messages("lim", "big.bin", b"\0" * (21 * MiB), declare=False)
        with pytest.raises(aio.AioRpcError) as raised:
            await api.uploads.Upload(stream_of(messages))
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert error_info(raised.value)[0] == "UPLOAD_TOO_LARGE"
        # It can never finish: it is FAILED, with the reason, and its bytes are gone.
        listed = await api.uploads.ListUploads(pb.ListUploadsRequest(filter="state = FAILED"))
        assert [u.failure.reason for u in listed.uploads] == ["UPLOAD_TOO_LARGE"]
        assert listed.uploads[0].failure.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
        store = LocalStore(Path(limited_server.env["QUARRY_STORAGE_URL"].removeprefix("file://")))
        assert [o async for o in store.list_objects(f"staging/{api.namespace}/")] == []
        assert [m async for m in store.list_multipart(f"staging/{api.namespace}/")] == []
        assert (await api.uploads.ListUploads(pb.ListUploadsRequest(filter="state = OPEN"))).uploads == []
    finally:
        await api.channel.close()


async def test_a_creating_stream_that_commits_nothing_keeps_nothing(env: Env) -> None:
    # Header and a few bytes, then the client half-closes without finish: there is nothing to resume.
    error = await fails(upload_call(env, [header(size=10 * MiB), *chunk_messages(b"x" * MiB)]),
                        grpc.StatusCode.FAILED_PRECONDITION, "NOTHING_COMMITTED")
    assert "nothing was kept" in (error.details() or "")
    assert await env.leftovers() == NOTHING


def test_the_server_refuses_the_pure_python_crc32c() -> None:
    # The pure-Python CRC32C would check each chunk for seconds on the event loop: better not to start.
    pretend = "import google_crc32c; google_crc32c.implementation = 'python'; import server.app"
    result = subprocess.run([sys.executable, "-c", pretend], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "google-crc32c is the pure-Python build" in result.stderr


@pytest.mark.parametrize("quarry", ["file"], indirect=True)  # a real file-system fault needs the local store
async def test_a_store_failure_inside_a_transaction_is_the_store_s(env: Env) -> None:
    opened = (await env.api.uploads.CreateUpload(create_request("disk", "d.bin", 5))).upload
    await env.api.uploads.Upload(stream_of(resume_messages(opened.name, 0, b"hello", finish=False)))
    # A directory where the staged object must appear: publishing it fails with an OSError (EISDIR), inside
    # the transaction that stages the upload. It is the store that failed, not the database.
    assert isinstance(env.store, LocalStore)
    destination = env.store.root / "staging" / env.namespace / opened.name.rsplit("/", 1)[1]
    destination.mkdir(parents=True)
    error = await fails(env.api.uploads.CompleteUpload(pb.CompleteUploadRequest(name=opened.name)),
                        grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE")
    assert "IsADirectoryError" in (error.details() or "")
    current = (await env.api.uploads.GetUpload(pb.GetUploadRequest(name=opened.name))).upload
    assert current.state == upload_pb2.UPLOAD_STATE_OPEN and current.committed_bytes == 5
    destination.rmdir()
    staged = (await env.api.uploads.CompleteUpload(pb.CompleteUploadRequest(name=opened.name))).upload
    assert staged.state == upload_pb2.UPLOAD_STATE_STAGED
    assert await env.read_object(f"staging/{env.namespace}/{opened.name.rsplit('/', 1)[1]}") == b"hello"


async def test_an_offset_past_the_last_possible_part_is_refused_before_anything_is_written(env: Env) -> None:
    # Without a declared size any part boundary may start a stream, but not one past part 10,000: accepted,
    # its first byte would be RESOURCE_EXHAUSTED and fail the upload, deleting what was committed.
    opened = (await env.api.uploads.CreateUpload(create_request("far", "f.bin"))).upload
    part = opened.part_size_bytes
    await env.api.uploads.Upload(stream_of(resume_messages(opened.name, 0, b"\1" * part, finish=False)))
    error = await fails(upload_call(env, resume_messages(opened.name, 10_000 * part, b"x" * MiB)),
                        grpc.StatusCode.FAILED_PRECONDITION, "WRONG_OFFSET")
    assert error_info(error)[1]["expected_offset"] == str(part)
    assert "10000 parts" in (error.details() or "")
    current = (await env.api.uploads.GetUpload(pb.GetUploadRequest(name=opened.name))).upload
    assert current.state == upload_pb2.UPLOAD_STATE_OPEN and current.committed_bytes == part
    assert [p.part_number for p in current.parts] == [1]
    assert await env.leftovers() == {"rows": 1, "objects": 0, "multipart": 1, "versions": 0}


async def test_an_offset_past_max_upload_bytes_is_refused_before_anything_is_written(limited_server) -> None:  # type: ignore[no-untyped-def]
    api = open_api(limited_server.address)
    try:
        opened = (await api.uploads.CreateUpload(create_request("far", "f.bin"))).upload
        offset = 2 * opened.part_size_bytes  # a part boundary past the server's 20 MiB limit
        with pytest.raises(aio.AioRpcError) as raised:
            await api.uploads.Upload(stream_of(resume_messages(opened.name, offset, b"x" * MiB)))
        assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(raised.value) == ("WRONG_OFFSET", {"expected_offset": "0"})
        assert "max_upload_bytes 20971520" in (raised.value.details() or "")
        current = (await api.uploads.GetUpload(pb.GetUploadRequest(name=opened.name))).upload
        # Not FAILED (this server's uploads expire after 2 s, so the sweep may have moved it on since).
        assert current.state in (upload_pb2.UPLOAD_STATE_OPEN, upload_pb2.UPLOAD_STATE_EXPIRED)
    finally:
        await api.channel.close()


async def test_a_sha256_in_a_finish_that_keeps_the_upload_open_is_refused(env: Env) -> None:
    # Kept open, the upload is completed later by CompleteUpload: a sha256 given here would be dropped.
    data = b"payload"
    sha = hashlib.sha256(data).hexdigest()
    one_call = [header(size=len(data)), *chunk_messages(data),
                pb.UploadRequest(finish=pb.UploadFinish(sha256=sha, keep_open=True))]
    error = await fails(upload_call(env, one_call), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert field_violations(error) == ["finish.sha256"]
    assert "CompleteUpload" in (error.details() or "")
    assert await env.leftovers() == NOTHING
    opened = (await env.api.uploads.CreateUpload(create_request("keep", "k.bin", len(data)))).upload
    error = await fails(upload_call(env, resume_messages(opened.name, 0, data, sha256=sha, keep_open=True)),
                        grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert field_violations(error) == ["finish.sha256"]
    current = (await env.api.uploads.GetUpload(pb.GetUploadRequest(name=opened.name))).upload
    assert current.state == upload_pb2.UPLOAD_STATE_OPEN and current.committed_bytes == 0 and not current.parts
    assert await env.leftovers() == {"rows": 1, "objects": 0, "multipart": 1, "versions": 0}


async def test_a_namespace_that_is_not_a_name_is_refused_before_anything_is_made(env: Env) -> None:
    # The namespace comes from the x-quarry-namespace metadata, not from a field: refused for every call.
    bad = open_api(env.server.address, "Not-A-Name")
    try:
        outsider = Env(bad, env.server, env.store, env.pool)
        for call in (bad.uploads.CreateUpload(create_request("ds", "f.bin", 5)),
                     upload_call(outsider, one_call_messages("ds", "f.bin", b"hello")),
                     bad.uploads.ListUploads(pb.ListUploadsRequest())):
            error = await fails(call, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_NAMESPACE")
            assert field_violations(error) == ["namespace"]
        assert await outsider.leftovers() == NOTHING
        assert await env.pool.fetchval("SELECT count(*) FROM namespaces WHERE name = 'Not-A-Name'") == 0
    finally:
        await bad.channel.close()
    # The same calls in a namespace that is a name work.
    assert (await upload_bytes(env.api, "ds", "f.bin", b"hello")).upload.state == upload_pb2.UPLOAD_STATE_STAGED


async def test_a_part_past_the_last_one_fails_the_upload(env: Env) -> None:
    # Without a declared size, a stream may start at part 10,000 (the last one S3 allows); the byte after it would
    # need part 10,001. The upload can never finish: it FAILS, and what it held is deleted.
    opened = (await env.api.uploads.CreateUpload(create_request("far", "f.bin"))).upload
    part = opened.part_size_bytes
    error = await fails(upload_call(env, resume_messages(opened.name, 9_999 * part, b"\1" * part + b"\2",
                                                         finish=False)),
                        grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_PARTS")
    assert "declare its size" in (error.details() or "")
    failed = (await env.api.uploads.GetUpload(pb.GetUploadRequest(name=opened.name))).upload
    assert (failed.state, failed.failure.reason) == (upload_pb2.UPLOAD_STATE_FAILED, "TOO_MANY_PARTS")
    assert await env.leftovers() == {"rows": 1, "objects": 0, "multipart": 0, "versions": 0}
    # A FAILED upload takes no more bytes.
    error = await fails(upload_call(env, resume_messages(opened.name, 0, b"late")), grpc.StatusCode.FAILED_PRECONDITION,
                        "UPLOAD_FAILED")
    assert error_info(error)[1] == {"state": "FAILED"}
    await fails(env.api.uploads.CompleteUpload(pb.CompleteUploadRequest(name=opened.name)),
                grpc.StatusCode.FAILED_PRECONDITION, "UPLOAD_FAILED")


async def test_a_declared_size_that_needs_too_many_parts(small_parts_file: ServerHandle, stores: dict[str, ObjectStore],
                                                        pools: dict[str, asyncpg.Pool]) -> None:
    # Parts of at most 5 MiB: a file over 10,000 of them (52 GB) fits under max_upload_bytes (1 TiB), not in S3.
    api = open_api(small_parts_file.address)
    env = Env(api, small_parts_file, stores["file"], pools["file"])
    try:
        fits = 10_000 * 5 * MiB
        error = await fails(api.uploads.CreateUpload(create_request("huge", "h.bin", fits + 1)),
                            grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_PARTS")
        assert "10000 parts" in (error.details() or "")
        assert await env.leftovers() == NOTHING
        opened = (await api.uploads.CreateUpload(create_request("huge", "h.bin", fits))).upload
        assert opened.part_size_bytes == 5 * MiB
        await api.uploads.CancelUpload(pb.CancelUploadRequest(name=opened.name))
        assert await env.leftovers() == {"rows": 1, "objects": 0, "multipart": 0, "versions": 0}
    finally:
        await api.channel.close()
