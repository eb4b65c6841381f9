"""The asyncio uploader: the same plan as the blocking one, over grpc.aio.

grpc.aio reports its own failed write (INTERNAL "Failed execute_batch") instead of the server's status
when the server fails a call the client is still writing to. So each stream writes its header, then waits
for the server's initial metadata (`x-quarry-upload`, sent once the header is accepted) before it sends a
byte; a refused header is then read as the real status. Any INTERNAL without a Quarry reason is taken for
such a transport failure and the stream is continued from the committed parts.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from quarry._exceptions import NotFound, PermissionDenied, RpcError, from_grpc
from quarry._plan import Range, plan_ranges
from quarry._results import ProgressCallback, UploadResult
from quarry._transport import UPLOAD_METADATA, AsyncTransport, stream_timeout
from quarry._uploader import log, resumable, retry_delay
from quarry._uploads import (
    OPEN,
    STAGED_OR_LATER,
    Tally,
    UploadJob,
    check_waited,
    chunk_message,
    committed_in,
    finish_message,
    header_message,
    wait_is_over,
)
from quarry.v1 import upload_service_pb2 as pb

__all__ = ["AsyncUploader"]

AsyncWatch = Callable[[str, float | None], AsyncIterator[Any]]


def _resumable(error: RpcError) -> bool:
    return resumable(error) or (error.code is grpc.StatusCode.INTERNAL and not error.reason)


class AsyncUploader:
    """Uploads files through an AsyncTransport."""

    def __init__(self, transport: AsyncTransport, streams: int, chunk_size: int,
                 crc: Callable[[bytes], int] | None) -> None:
        self.t = transport
        self.streams = max(1, streams)
        self.chunk_size = chunk_size
        self.crc = crc

    async def _get(self, name: str) -> Any:
        return (await self.t.unary(self.t.uploads.GetUpload, pb.GetUploadRequest(name=name), idempotent=True)).upload

    async def run(self, job: UploadJob, *, progress: ProgressCallback | None = None, wait: bool = False,
                  wait_timeout: float | None = None, watch: AsyncWatch | None = None,
                  keep_state: bool = False) -> UploadResult:
        """Upload the job's file (resuming when a saved upload matches); optionally wait for the end."""
        tally = Tally(job.size, progress)
        upload, resumed = await self._open(job)
        if upload.state == OPEN:
            upload = await self._send(job, upload, tally)
        else:
            tally.skip(job.size)
        job.check_unchanged()
        if wait:
            assert watch is not None
            upload = await self._wait(upload, watch, wait_timeout)
        if not keep_state:
            job.forget()
        return job.result(upload, tally, resumed)

    async def _open(self, job: UploadJob) -> tuple[Any, bool]:
        if job.state.upload:
            try:
                upload = await self._get(job.state.upload)
            except (NotFound, PermissionDenied):
                upload = None
            if upload is not None and job.matches(upload):
                return upload, True
            job.forget()
        upload = (await self.t.unary(self.t.uploads.CreateUpload, job.create_request(), idempotent=True)).upload
        job.remember(upload)
        return upload, bool(upload.parts)

    async def _send(self, job: UploadJob, upload: Any, tally: Tally) -> Any:
        tally.skip(sum(part.size_bytes for part in upload.parts))
        ranges = deque(plan_ranges(job.size, upload.part_size_bytes, [p.part_number for p in upload.parts],
                                   self.streams))
        single = len(ranges) == 1 and ranges[0].last and ranges[0].start == upload.committed_bytes
        responses: list[Any] = []

        async def worker() -> None:
            while ranges:
                responses.append(await self._send_range(job, upload.name, ranges.popleft(), not single, tally))

        tasks = [asyncio.ensure_future(worker()) for _ in range(min(self.streams, len(ranges)))]
        if tasks:
            try:
                done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            finally:
                for task in tasks:
                    task.cancel()  # a cancelled stream keeps the whole parts the server received
                await asyncio.gather(*tasks, return_exceptions=True)
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        staged = next((r.upload for r in responses if r is not None and r.upload.state in STAGED_OR_LATER), None)
        if staged is not None:
            return staged
        job.check_unchanged()
        return (await self.t.unary(self.t.uploads.CompleteUpload, pb.CompleteUploadRequest(name=upload.name),
                                   idempotent=True)).upload

    async def _send_range(self, job: UploadJob, name: str, span: Range, keep_open: bool, tally: Tally) -> Any:
        start, committed, attempt = span.start, 0, 0
        while True:
            attempt += 1
            tally.opened()
            sent = [0]
            try:
                return await self._stream(job, name, start, span, keep_open, tally, sent)
            except grpc.RpcError as exc:
                error = from_grpc(exc)
                if not _resumable(error):
                    raise error from exc
            # Wait first: the part the broken stream had received whole is still landing on the server.
            await asyncio.sleep(retry_delay(self.t.retry, attempt, error))
            upload = await self._get(name)
            if upload.state in STAGED_OR_LATER:
                return None  # a finish that landed although its answer was lost
            if upload.state != OPEN:
                raise error
            previous = start
            now, start = committed_in(upload, span)
            log.info("stream of %s from byte %d broke after %d bytes (%s); continuing at byte %d", name, previous,
                     sent[0], error, start)
            tally.rewind(sent[0] - (now - committed))
            if now > committed:
                attempt = 0  # progress was made: this is a new run of failures, not the same one
            committed = now
            if start >= span.stop and span.size > 0:
                return None
            if attempt >= self.t.retry.max_attempts:
                raise error

    async def _stream(self, job: UploadJob, name: str, start: int, span: Range, keep_open: bool, tally: Tally,
                      sent: list[int]) -> Any:
        call = self.t.uploads.Upload(metadata=self.t.metadata,
                                     timeout=stream_timeout(span.stop - start, self.t.timeout))
        try:
            await call.write(header_message(name, start))
            if UPLOAD_METADATA not in dict(await call.initial_metadata() or ()):
                return await call  # the header was refused: this raises the server's status
            position = start
            while position < span.stop:
                size = min(self.chunk_size, span.stop - position)
                data = await asyncio.to_thread(job.read, position, size)
                await call.write(chunk_message(data, self.crc))
                sent[0] += size
                tally.add(size)
                position += size
            if span.last:
                await call.write(finish_message(keep_open))
            await call.done_writing()
        except asyncio.InvalidStateError:
            pass  # the call ended while we wrote: its status, read below, says why
        except BaseException:
            call.cancel()
            raise
        return await call

    async def _wait(self, upload: Any, watch: AsyncWatch, timeout: float | None) -> Any:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not wait_is_over(upload):
            left = None if deadline is None else max(0.001, deadline - loop.time())
            async for update in watch(upload.name, left):
                upload = update
                if wait_is_over(upload):
                    break
        return check_waited(upload)
