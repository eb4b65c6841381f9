"""The blocking uploader: one file over one or several Upload streams, resumable.

Streams use grpc's synchronous API: the request iterator is consumed by grpc's own thread, so a server
that fails the call while we are still writing is reported with its real status. Each stream sends one
range of whole parts; a broken stream is continued from the first part of its range the server has not
committed (GetUpload), never re-sending a committed part.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Any

import grpc

from quarry._exceptions import NotFound, PermissionDenied, QuarryError, RpcError, from_grpc
from quarry._plan import Range, plan_ranges
from quarry._results import ProgressCallback, UploadResult
from quarry._retry import RetryPolicy
from quarry._transport import SyncTransport, stream_timeout
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

__all__ = ["SyncUploader", "resumable", "retry_delay"]

log = logging.getLogger("quarry")
RACES = ("WRONG_OFFSET", "PART_ALREADY_WRITTEN")  # the server moved on since we asked: ask again
Watch = Callable[[str, float | None], Iterator[Any]]


class _Stopped(QuarryError):
    """A stream ended early because another stream of the same upload failed."""


def _result(futures: list[Future[Any]]) -> Any:
    """The response of the stream that finished the file; else raise the error that stopped the others."""
    errors = [f.exception() for f in futures]
    first = next((e for e in errors if e is not None and not isinstance(e, _Stopped)), None)
    if first is None:
        first = next((e for e in errors if e is not None), None)
    if first is not None:
        raise first
    return next((f.result() for f in futures if f.result() is not None), None)


def retry_delay(retry: RetryPolicy, attempt: int, error: RpcError) -> float:
    """How long to wait before continuing a broken stream: at once after losing a race with a part that
    landed late, else the policy's jittered backoff, but at least half of its first step (the part in flight
    needs a moment to land, and asking too early means sending it again)."""
    if error.reason in RACES:
        return 0.0
    return max(retry.delay(attempt, error), retry.initial_backoff / 2)


def resumable(error: RpcError) -> bool:
    """Whether a broken Upload stream may be continued from the committed parts."""
    if error.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED, grpc.StatusCode.CANCELLED,
                      grpc.StatusCode.DEADLINE_EXCEEDED):
        return True
    return error.reason in RACES


class _Requests:
    """The messages of one stream: header, chunks of the range read as they are sent, finish.

    It ends early, without the finish, when told to stop (another stream failed, or Ctrl-C): the server
    then keeps the whole parts received, so the upload stays resumable. A local error is kept for the
    caller rather than raised into grpc's thread."""

    def __init__(self, job: UploadJob, name: str, start: int, span: Range, keep_open: bool, chunk_size: int,
                 crc: Callable[[bytes], int] | None, tally: Tally, stop: threading.Event) -> None:
        self.job, self.name, self.start, self.span, self.keep_open = job, name, start, span, keep_open
        self.chunk_size, self.crc, self.tally, self.stop = chunk_size, crc, tally, stop
        self.sent = 0
        self.error: QuarryError | None = None

    def __iter__(self) -> Iterator[pb.UploadRequest]:
        yield header_message(self.name, self.start)
        try:
            with open(self.job.path, "rb") as file:
                file.seek(self.start)
                position = self.start
                while position < self.span.stop:
                    if self.stop.is_set():
                        return
                    data = file.read(min(self.chunk_size, self.span.stop - position))
                    if not data:
                        self.error = self.job.shrank()
                        return
                    message = chunk_message(data, self.crc)
                    self.sent += len(data)
                    self.tally.add(len(data))
                    yield message
                    position += len(data)
        except OSError as exc:
            self.error = self.job.unreadable(exc)
            return
        if self.span.last:
            yield finish_message(self.keep_open)


class SyncUploader:
    """Uploads files through a SyncTransport."""

    def __init__(self, transport: SyncTransport, streams: int, chunk_size: int,
                 crc: Callable[[bytes], int] | None) -> None:
        self.t = transport
        self.streams = max(1, streams)
        self.chunk_size = chunk_size
        self.crc = crc

    def _get(self, name: str) -> Any:
        return self.t.unary(self.t.uploads.GetUpload, pb.GetUploadRequest(name=name), idempotent=True).upload

    def run(self, job: UploadJob, *, progress: ProgressCallback | None = None, wait: bool = False,
            wait_timeout: float | None = None, watch: Watch | None = None, keep_state: bool = False) -> UploadResult:
        """Upload the job's file (resuming when a saved upload matches); optionally wait for the end."""
        tally = Tally(job.size, progress)
        upload, resumed = self._open(job)
        if upload.state == OPEN:
            upload = self._send(job, upload, tally)
        else:
            tally.skip(job.size)
        job.check_unchanged()
        if wait:
            assert watch is not None
            upload = self._wait(upload, watch, wait_timeout)
        if not keep_state:
            job.forget()
        return job.result(upload, tally, resumed)

    def _open(self, job: UploadJob) -> tuple[Any, bool]:
        if job.state.upload:
            try:
                upload = self._get(job.state.upload)
            except (NotFound, PermissionDenied):
                upload = None
            if upload is not None and job.matches(upload):
                return upload, True
            job.forget()
        upload = self.t.unary(self.t.uploads.CreateUpload, job.create_request(), idempotent=True).upload
        job.remember(upload)
        # A create repeated with the saved request_id returns the first upload, parts and all.
        return upload, bool(upload.parts)

    def _send(self, job: UploadJob, upload: Any, tally: Tally) -> Any:
        tally.skip(sum(part.size_bytes for part in upload.parts))
        ranges = plan_ranges(job.size, upload.part_size_bytes, [p.part_number for p in upload.parts], self.streams)
        # One range to the end, continuing the committed prefix: its finish stages the upload at once.
        single = len(ranges) == 1 and ranges[0].last and ranges[0].start == upload.committed_bytes
        stop = threading.Event()
        responses: list[Any] = []
        if len(ranges) == 1:
            responses.append(self._send_range(job, upload.name, ranges[0], not single, tally, stop))
        elif ranges:
            with ThreadPoolExecutor(min(self.streams, len(ranges)), thread_name_prefix="quarry-upload") as pool:
                futures = [pool.submit(self._send_range, job, upload.name, span, True, tally, stop) for span in ranges]
                try:
                    wait(futures, return_when=FIRST_EXCEPTION)
                except BaseException:
                    stop.set()  # Ctrl-C: every stream ends at its next chunk, keeping its whole parts
                    raise
                if any(f.done() and f.exception() for f in futures):
                    stop.set()
            responses = [_result(futures)]
        staged = next((r.upload for r in responses if r is not None and r.upload.state in STAGED_OR_LATER), None)
        if staged is not None:
            return staged
        job.check_unchanged()
        return self.t.unary(self.t.uploads.CompleteUpload, pb.CompleteUploadRequest(name=upload.name),
                            idempotent=True).upload

    def _send_range(self, job: UploadJob, name: str, span: Range, keep_open: bool, tally: Tally,
                    stop: threading.Event) -> Any:
        """Send one range over a stream, continuing it after breaks; None when the range is committed but
        the upload still needs CompleteUpload."""
        start, committed, attempt = span.start, 0, 0
        while True:
            attempt += 1
            requests = _Requests(job, name, start, span, keep_open, self.chunk_size, self.crc, tally, stop)
            tally.opened()
            try:
                response = self.t.uploads.Upload(iter(requests), metadata=self.t.metadata,
                                                 timeout=stream_timeout(span.stop - start, self.t.timeout))
            except grpc.RpcError as exc:
                if requests.error is not None:
                    raise requests.error from None
                error = from_grpc(exc)
                if not resumable(error) or stop.is_set():
                    raise error from exc
            else:
                if requests.error is not None:
                    raise requests.error
                if stop.is_set() and start + requests.sent < span.stop:
                    raise _Stopped()
                return response
            # Wait first: the part the broken stream had received whole is still landing on the server.
            time.sleep(retry_delay(self.t.retry, attempt, error))
            upload = self._get(name)
            if upload.state in STAGED_OR_LATER:
                return None  # a finish that landed although its answer was lost
            if upload.state != OPEN:
                raise error
            previous = start
            now, start = committed_in(upload, span)
            log.info("stream of %s from byte %d broke after %d bytes (%s); continuing at byte %d", name, previous,
                     requests.sent, error, start)
            tally.rewind(requests.sent - (now - committed))
            if now > committed:
                attempt = 0  # progress was made: this is a new run of failures, not the same one
            committed = now
            if start >= span.stop and span.size > 0:
                return None
            if attempt >= self.t.retry.max_attempts:
                raise error

    def _wait(self, upload: Any, watch: Watch, timeout: float | None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not wait_is_over(upload):
            left = None if deadline is None else max(0.001, deadline - time.monotonic())
            for update in watch(upload.name, left):
                upload = update
                if wait_is_over(upload):
                    break
        return check_waited(upload)
