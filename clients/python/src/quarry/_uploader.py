"""The blocking uploader: one file over one or several Upload streams, resumable.

Streams use grpc's synchronous API: the request iterator is consumed by grpc's own thread, so a server
that fails the call while we are still writing is reported with its real status. Each stream sends one
range of whole parts; a broken stream is continued from the first part of its range the server has not
committed (GetUpload), never re-sending a committed part, for as long as the retry budget allows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import Any

from quarry._calls import Calls, stream_timeout
from quarry._checksums import FileDigest
from quarry._exceptions import NotFound, PermissionDenied, QuarryError, RpcError
from quarry._plan import Range
from quarry._results import ProgressCallback, UploadResult
from quarry._retry import attempts
from quarry._transport import SyncTransport
from quarry._uploads import (
    OPEN,
    RangeStream,
    Tally,
    UploadJob,
    check_waited,
    chunk_message,
    finish_message,
    header_message,
    range_budget,
    staged_in,
    wait_is_over,
)
from quarry.v1 import upload_pb2
from quarry.v1 import upload_service_pb2 as pb

__all__ = ["SyncUploader"]

Watch = Callable[[str, float | None], Iterator[upload_pb2.Upload]]


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


class _Requests:
    """The messages of one stream: header, chunks of the range read as they are sent (encoded by hand:
    `_wire.py`), finish (with the sha256, once hashed, when it stages the upload).

    It ends early, without the finish, when told to stop (another stream failed, or Ctrl-C): the server
    then keeps the whole parts received, so the upload stays resumable. A local error is kept for the
    caller rather than raised into grpc's thread."""

    def __init__(self, job: UploadJob, stream: RangeStream, keep_open: bool, chunk_size: int,
                 crc: Callable[[bytes], int] | None, stop: threading.Event, digest: FileDigest | None) -> None:
        self.job, self.stream, self.keep_open = job, stream, keep_open
        self.chunk_size, self.crc, self.stop = chunk_size, crc, stop
        self.digest = digest
        self.error: QuarryError | None = None

    def __iter__(self) -> Iterator[pb.UploadRequest | bytes]:
        stream, span = self.stream, self.stream.span
        yield header_message(stream.name, stream.start)
        try:
            with open(self.job.path, "rb", buffering=0) as file:
                file.seek(stream.start)
                position = stream.start
                while position < span.stop:
                    if self.stop.is_set():
                        return
                    data = file.read(min(self.chunk_size, span.stop - position))
                    if not data:
                        self.error = self.job.shrank()
                        return
                    message = chunk_message(data, self.crc)
                    stream.add(len(data))
                    yield message
                    position += len(data)
        except OSError as exc:
            self.error = self.job.unreadable(exc)
            return
        if span.last:
            try:
                sha256 = "" if self.keep_open else self.job.sha256_of(self.digest)
            except QuarryError as exc:
                self.error = exc
                return
            yield finish_message(self.keep_open, sha256)


class SyncUploader:
    """Uploads files through a SyncTransport."""

    def __init__(self, transport: SyncTransport, calls: Calls, streams: int, chunk_size: int,
                 crc: Callable[[bytes], int] | None) -> None:
        self.t = transport
        self.calls = calls
        self.streams = max(1, streams)
        self.chunk_size = chunk_size
        self.crc = crc

    def run(self, job: UploadJob, *, progress: ProgressCallback | None = None, wait: bool = False,
            wait_timeout: float | None = None, watch: Watch | None = None, keep_state: bool = False) -> UploadResult:
        """Upload the job's file (resuming when a saved upload matches); optionally wait for the end."""
        tally = Tally(job.size, progress)
        upload, resumed = self._open(job)
        digest = job.digest(upload)
        try:
            if upload.state == OPEN:
                upload = self._send(job, upload, tally, digest)
            else:
                tally.skip(job.size)
            sha256 = job.sha256_of(digest)
        finally:
            if digest is not None:
                digest.cancel()
        job.check_unchanged()
        if wait:
            assert watch is not None
            upload = self._wait(upload, watch, wait_timeout)
        if not keep_state:
            job.forget()
        return job.result(upload, tally, resumed, sha256)

    def _open(self, job: UploadJob) -> tuple[upload_pb2.Upload, bool]:
        if job.state.upload:
            try:
                saved = self.t.call(self.calls.get_upload(job.state.upload))
            except (NotFound, PermissionDenied):
                saved = None
            if job.resumes(saved):
                return saved, True
        upload = self.t.call(self.calls.created(job.create_request()))
        job.remember(upload)
        # A create repeated with the saved request_id returns the first upload, parts and all.
        return upload, bool(upload.parts)

    def _send(self, job: UploadJob, upload: upload_pb2.Upload, tally: Tally,
              digest: FileDigest | None) -> upload_pb2.Upload:
        tally.skip(sum(part.size_bytes for part in upload.parts))
        ranges, single = job.plan(upload, self.streams)
        stop = threading.Event()
        responses: list[Any] = []
        if len(ranges) == 1:
            responses.append(self._send_range(job, upload.name, ranges[0], not single, tally, stop, digest))
        elif ranges:
            with ThreadPoolExecutor(min(self.streams, len(ranges)), thread_name_prefix="quarry-upload") as pool:
                futures = [pool.submit(self._send_range, job, upload.name, span, True, tally, stop, digest)
                           for span in ranges]
                try:
                    wait(futures, return_when=FIRST_EXCEPTION)
                except BaseException:
                    stop.set()  # Ctrl-C: every stream ends at its next chunk, keeping its whole parts
                    raise
                if any(f.done() and f.exception() for f in futures):
                    stop.set()
            responses = [_result(futures)]
        staged = staged_in(responses)
        if staged is not None:
            return staged
        sha256 = job.sha256_of(digest)
        job.check_unchanged()
        return self.t.call(self.calls.complete_upload(upload.name, sha256=sha256))

    def _send_range(self, job: UploadJob, name: str, span: Range, keep_open: bool, tally: Tally,
                    stop: threading.Event, digest: FileDigest | None) -> Any:
        """Send one range over a stream, continuing it after breaks; None when the range is committed but
        the upload may still need CompleteUpload."""
        stream = RangeStream(name, span, tally)
        budget = range_budget(self.t.retry, stopped=stop.is_set)
        for attempt in attempts(budget):
            with attempt:
                # After a break, first wait (the loop did): the part the broken stream had received whole
                # is still landing on the server. Then ask where to go on.
                if stream.broken is not None and stream.resume(self.t.call(self.calls.get_upload(name)), budget):
                    return None
                requests = _Requests(job, stream, keep_open, self.chunk_size, self.crc, stop, digest)
                stream.opened()
                try:
                    response = self.t.upload(requests, stream_timeout(span.stop - stream.start, self.t.timeout))
                except RpcError as error:
                    if requests.error is not None:
                        raise requests.error from None
                    stream.broke(error)
                    raise
                if requests.error is not None:
                    raise requests.error
                if stop.is_set() and stream.start + stream.sent < span.stop:
                    raise _Stopped()
        return response

    def _wait(self, upload: upload_pb2.Upload, watch: Watch, timeout: float | None) -> upload_pb2.Upload:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not wait_is_over(upload):
            left = None if deadline is None else max(0.001, deadline - time.monotonic())
            for update in watch(upload.name, left):
                upload = update
                if wait_is_over(upload):
                    break
        return check_waited(upload)
