"""The asyncio uploader: the same plan as the blocking one, over grpc.aio.

Each stream writes its header and waits for the server to accept it before it sends a byte (see
`AsyncTransport.upload_from`). Any INTERNAL without a Quarry reason is taken for grpc.aio's own failed
write and the stream is continued from the committed parts.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from quarry._calls import Calls, stream_timeout
from quarry._checksums import FileDigest
from quarry._exceptions import NotFound, PermissionDenied, RpcError
from quarry._plan import Range
from quarry._results import ProgressCallback, UploadResult
from quarry._retry import async_attempts
from quarry._transport import AsyncTransport
from quarry._uploads import (
    OPEN,
    RangeStream,
    Tally,
    UploadJob,
    check_waited,
    finish_message,
    header_message,
    range_budget,
    staged_in,
    wait_is_over,
)
from quarry.v1 import upload_pb2
from quarry.v1 import upload_service_pb2 as pb

__all__ = ["AsyncUploader"]

AsyncWatch = Callable[[str, float | None], AsyncIterator[upload_pb2.Upload]]


class AsyncUploader:
    """Uploads files through an AsyncTransport."""

    def __init__(self, transport: AsyncTransport, calls: Calls, streams: int, chunk_size: int,
                 crc: Callable[[bytes], int] | None) -> None:
        self.t = transport
        self.calls = calls
        self.streams = max(1, streams)
        self.chunk_size = chunk_size
        self.crc = crc

    async def run(self, job: UploadJob, *, progress: ProgressCallback | None = None, wait: bool = False,
                  wait_timeout: float | None = None, watch: AsyncWatch | None = None,
                  keep_state: bool = False) -> UploadResult:
        """Upload the job's file (resuming when a saved upload matches); optionally wait for the end."""
        tally = Tally(job.size, progress)
        upload, resumed = await self._open(job)
        digest = await asyncio.to_thread(job.digest, upload)
        try:
            if upload.state == OPEN:
                upload = await self._send(job, upload, tally, digest)
            else:
                tally.skip(job.size)
            sha256 = await asyncio.to_thread(job.sha256_of, digest)
        finally:
            if digest is not None:
                await asyncio.to_thread(digest.cancel)
        job.check_unchanged()
        if wait:
            assert watch is not None
            upload = await self._wait(upload, watch, wait_timeout)
        if not keep_state:
            job.forget()
        return job.result(upload, tally, resumed, sha256)

    async def _open(self, job: UploadJob) -> tuple[upload_pb2.Upload, bool]:
        if job.state.upload:
            try:
                saved = await self.t.call(self.calls.get_upload(job.state.upload))
            except (NotFound, PermissionDenied):
                saved = None
            resumes = await asyncio.to_thread(job.resumes, saved)  # reads the committed parts back
            if resumes and saved is not None:
                return saved, True
        upload = await self.t.call(self.calls.created(job.create_request()))
        job.remember(upload)
        return upload, bool(upload.parts)

    async def _send(self, job: UploadJob, upload: upload_pb2.Upload, tally: Tally,
                    digest: FileDigest | None) -> upload_pb2.Upload:
        tally.skip(sum(part.size_bytes for part in upload.parts))
        planned, single = job.plan(upload, self.streams)
        ranges = deque(planned)
        responses: list[Any] = []

        async def worker() -> None:
            while ranges:
                responses.append(await self._send_range(job, upload.name, ranges.popleft(), not single, tally,
                                                        digest))

        tasks = [asyncio.ensure_future(worker()) for _ in range(min(self.streams, len(ranges)))]
        if tasks:
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            finally:
                for task in tasks:
                    task.cancel()  # a cancelled stream keeps the whole parts the server received
                await asyncio.gather(*tasks, return_exceptions=True)
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        staged = staged_in(responses)
        if staged is not None:
            return staged
        sha256 = await asyncio.to_thread(job.sha256_of, digest)
        job.check_unchanged()
        return await self.t.call(self.calls.complete_upload(upload.name, sha256=sha256))

    async def _send_range(self, job: UploadJob, name: str, span: Range, keep_open: bool, tally: Tally,
                          digest: FileDigest | None) -> Any:
        stream = RangeStream(name, span, tally)
        budget = range_budget(self.t.retry, aio=True)
        async for attempt in async_attempts(budget):
            with attempt:
                # After a break, first wait (the loop did): the part the broken stream had received whole
                # is still landing on the server. Then ask where to go on.
                if stream.broken is not None and stream.resume(await self.t.call(self.calls.get_upload(name)),
                                                               budget):
                    return None
                stream.opened()
                timeout = stream_timeout(span.stop - stream.start, self.t.timeout)
                try:
                    response = await self.t.upload_from(header_message(name, stream.start),
                                                        self._chunks(job, stream, keep_open, digest), timeout)
                except RpcError as error:
                    stream.broke(error)
                    raise
        return response

    async def _chunks(self, job: UploadJob, stream: RangeStream, keep_open: bool,
                      digest: FileDigest | None) -> AsyncIterator[pb.UploadRequest | bytes]:
        span, position = stream.span, stream.start
        while position < span.stop:
            size = min(self.chunk_size, span.stop - position)
            yield await asyncio.to_thread(job.chunk, position, size, self.crc)  # read, CRC'd and encoded there
            stream.add(size)
            position += size
        if span.last:
            sha256 = "" if keep_open else await asyncio.to_thread(job.sha256_of, digest)
            yield finish_message(keep_open, sha256)

    async def _wait(self, upload: upload_pb2.Upload, watch: AsyncWatch, timeout: float | None) -> upload_pb2.Upload:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not wait_is_over(upload):
            left = None if deadline is None else max(0.001, deadline - loop.time())
            async for update in watch(upload.name, left):
                upload = update
                if wait_is_over(upload):
                    break
        return check_waited(upload)
