"""UploadService: translate messages to upload use cases and back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from grpc import aio
from quarry.v1 import upload_pb2
from quarry.v1 import upload_service_pb2 as pb
from quarry.v1 import upload_service_pb2_grpc as pb_grpc

from server import metrics
from server.api import convert
from server.api.caller import CallerResolver
from server.api.interceptors import drain
from server.domain.upload_stream import Chunk, Finish, StreamMessage, UploadStream
from server.domain.uploads import NewUpload, Uploads
from server.model.errors import BufferBudgetSpent, InvalidArgument, QuarryError, StreamIdle
from server.model.uploads import Upload

UPLOAD_METADATA = "x-quarry-upload"


def new_upload(request: pb.CreateUploadRequest) -> tuple[str, NewUpload]:
    """The parent and the writable fields of a create request."""
    fields: upload_pb2.Upload = request.upload
    return request.parent, NewUpload(
        dataset=fields.dataset,
        path=fields.path,
        declared_size=fields.declared_size_bytes if fields.HasField("declared_size_bytes") else None,
        declared_sha256=fields.declared_sha256 or None,
        content_type=fields.content_type,
        auto_commit=fields.auto_commit,
        commit_message=fields.commit_message,
        request_id=request.request_id or None,
    )


async def _until_idle(requests: AsyncIterator[pb.UploadRequest], seconds: float) -> AsyncIterator[pb.UploadRequest]:
    """The stream's messages; StreamIdle when the client sends none for `seconds`. Only the wait for the client
    counts: while the server holds the stream back (a slow store, the budget), no message is asked for."""
    iterator = aiter(requests)
    while True:
        try:
            async with asyncio.timeout(seconds):
                request = await anext(iterator)
        except StopAsyncIteration:
            return
        except TimeoutError:
            metrics.IDLE_STREAMS.inc()
            raise StreamIdle(f"the client sent nothing for {seconds:g} s, so the stream was ended; the parts "
                             "committed are kept: resume from GetUpload's committed_bytes", retry_after=0.0,
                             metadata={"idle_seconds": f"{seconds:g}"}) from None
        yield request


async def _messages(requests: AsyncIterator[pb.UploadRequest]) -> AsyncIterator[StreamMessage]:
    async for request in requests:
        kind = request.WhichOneof("kind")
        if kind == "chunk":
            chunk = request.chunk
            message = Chunk(chunk.data, chunk.crc32c if chunk.HasField("crc32c") else None)
            del request, chunk  # the parsed message holds a second copy of the bytes: not kept while they are used
            yield message
        elif kind == "finish":
            yield Finish(request.finish.sha256 or None, request.finish.keep_open)
        elif kind == "header":
            raise InvalidArgument.field("header", "only the first message may be a header", reason="HEADER_REPEATED")
        else:
            raise InvalidArgument.field("kind", "empty message: set header, chunk or finish")


def _header(first: pb.UploadRequest | None) -> pb.UploadHeader:
    if first is None or first.WhichOneof("kind") != "header":
        raise InvalidArgument.field("header", "the first message of an Upload stream must be a header",
                                    reason="HEADER_MISSING")
    return first.header


class UploadServicer(pb_grpc.UploadServiceServicer):
    """The UploadService handlers."""

    def __init__(self, uploads: Uploads, stream: UploadStream, caller: CallerResolver, idle_seconds: float) -> None:
        self._uploads = uploads
        self._stream = stream
        self._caller = caller
        self._idle_seconds = idle_seconds

    async def CreateUpload(self, request: pb.CreateUploadRequest,
                           context: aio.ServicerContext) -> pb.CreateUploadResponse:
        parent, spec = new_upload(request)
        upload, _ = await self._uploads.create(self._caller(context), parent, spec)
        return pb.CreateUploadResponse(upload=convert.upload(upload))

    async def Upload(self, request_iterator: AsyncIterator[pb.UploadRequest],
                     context: aio.ServicerContext) -> pb.UploadResponse:
        async def announce(upload: Upload) -> None:
            # Sent before any byte is read, so a client whose stream breaks knows what to resume.
            await context.send_initial_metadata(((UPLOAD_METADATA, upload.name),))

        requests = _until_idle(request_iterator, self._idle_seconds)
        try:
            caller = self._caller(context)
            header = _header(await anext(requests, None))
            parent = ""
            target: NewUpload | str
            if header.WhichOneof("target") == "create":
                parent, target = new_upload(header.create)
            elif header.WhichOneof("target") == "upload":
                target = header.upload
            else:
                raise InvalidArgument.field("header.target", "set create (a new upload) or upload (an existing one)",
                                            reason="HEADER_MISSING")
            result = await self._stream.write(caller, target, header.write_offset, _messages(requests), announce,
                                              parent)
        except QuarryError as exc:
            # A refusal (the header's included) while the client may still be sending: a little of what it
            # sends is read first, so a client near its end gets our status rather than its own failed write. Not
            # for a stream refused for want of memory (it must let go at once) or one whose client sends nothing.
            if not isinstance(exc, BufferBudgetSpent | StreamIdle):
                await drain(request_iterator)
            raise
        return pb.UploadResponse(upload=convert.upload(result.upload), committed_by_stream=result.committed)

    async def GetUpload(self, request: pb.GetUploadRequest, context: aio.ServicerContext) -> pb.GetUploadResponse:
        return pb.GetUploadResponse(upload=convert.upload(await self._uploads.load(self._caller(context),
                                                                                   request.name)))

    async def ListUploads(self, request: pb.ListUploadsRequest,
                          context: aio.ServicerContext) -> pb.ListUploadsResponse:
        page, token = await self._uploads.list(self._caller(context), request.parent, request.page_size,
                                               request.page_token, request.filter)
        return pb.ListUploadsResponse(uploads=[convert.upload(u) for u in page], next_page_token=token)

    async def CompleteUpload(self, request: pb.CompleteUploadRequest,
                             context: aio.ServicerContext) -> pb.CompleteUploadResponse:
        upload = await self._uploads.complete(self._caller(context), request.name, request.sha256 or None)
        return pb.CompleteUploadResponse(upload=convert.upload(upload))

    async def CancelUpload(self, request: pb.CancelUploadRequest,
                           context: aio.ServicerContext) -> pb.CancelUploadResponse:
        upload = await self._uploads.cancel(self._caller(context), request.name)
        return pb.CancelUploadResponse(upload=convert.upload(upload))

    async def RetryUpload(self, request: pb.RetryUploadRequest,
                          context: aio.ServicerContext) -> pb.RetryUploadResponse:
        upload = await self._uploads.retry(self._caller(context), request.name)
        return pb.RetryUploadResponse(upload=convert.upload(upload))

    async def WatchUpload(self, request: pb.WatchUploadRequest,
                          context: aio.ServicerContext) -> AsyncIterator[pb.WatchUploadResponse]:
        async for upload in self._uploads.watch(self._caller(context), request.name):
            yield pb.WatchUploadResponse(upload=convert.upload(upload))
