"""Helpers that drive UploadService the way a plain generated client would."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterable

import google_crc32c
from quarry.v1 import upload_pb2
from quarry.v1 import upload_service_pb2 as pb

from tests.support import Api

MiB = 1 << 20


def create_request(dataset: str, path: str, size: int | None = None, sha256: str = "", *,
                   auto_commit: bool = False, request_id: str = "", content_type: str = "") -> pb.CreateUploadRequest:
    upload = upload_pb2.Upload(dataset=dataset, path=path, declared_sha256=sha256, auto_commit=auto_commit,
                               content_type=content_type)
    if size is not None:
        upload.declared_size_bytes = size
    return pb.CreateUploadRequest(upload=upload, request_id=request_id)


def chunk_messages(data: bytes | memoryview, chunk: int = MiB, *, crc: bool = True) -> Iterable[pb.UploadRequest]:
    view = memoryview(data)
    for start in range(0, len(view), chunk):
        piece = bytes(view[start:start + chunk])
        message = pb.UploadChunk(data=piece)
        if crc:
            message.crc32c = google_crc32c.value(piece)
        yield pb.UploadRequest(chunk=message)


async def stream_of(messages: Iterable[pb.UploadRequest]) -> AsyncIterator[pb.UploadRequest]:
    for message in messages:
        yield message


def one_call_messages(dataset: str, path: str, data: bytes, *, chunk: int = MiB, declare: bool = True,
                      finish_sha: bool = False, crc: bool = True) -> list[pb.UploadRequest]:
    sha = hashlib.sha256(data).hexdigest()
    header = pb.UploadHeader(create=create_request(dataset, path, len(data) if declare else None,
                                                   "" if finish_sha else sha))
    return [pb.UploadRequest(header=header), *chunk_messages(data, chunk, crc=crc),
            pb.UploadRequest(finish=pb.UploadFinish(sha256=sha if finish_sha else ""))]


async def upload_bytes(api: Api, dataset: str, path: str, data: bytes, **options: object) -> pb.UploadResponse:
    """A whole file in one Upload call."""
    return await api.uploads.Upload(stream_of(one_call_messages(dataset, path, data, **options)))  # type: ignore[arg-type]


def resume_messages(name: str, offset: int, data: bytes, *, chunk: int = MiB, finish: bool = True,
                    sha256: str = "", keep_open: bool = False) -> list[pb.UploadRequest]:
    messages = [pb.UploadRequest(header=pb.UploadHeader(upload=name, write_offset=offset)),
                *chunk_messages(data, chunk)]
    if finish:
        messages.append(pb.UploadRequest(finish=pb.UploadFinish(sha256=sha256, keep_open=keep_open)))
    return messages
