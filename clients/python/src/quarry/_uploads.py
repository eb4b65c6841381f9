"""What the sync and async uploaders share: the job (file, target, resume state), messages and arithmetic.

An upload job is hashed once (the sha256 is kept in the resume state, so a restarted process does not
hash again), created with a request_id saved beforehand (so a create whose answer was lost is not
duplicated), and checked against the server before it is resumed.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import grpc

from quarry._checksums import sha256_file
from quarry._exceptions import IntegrityError, RpcError, UploadFailed, UsageError
from quarry._plan import Range, plan_ranges
from quarry._results import ProgressCallback, UploadResult
from quarry._resume import FileIdentity, ResumeState, ResumeStore
from quarry._retry import Budget, RetryPolicy
from quarry.v1 import upload_pb2
from quarry.v1 import upload_service_pb2 as pb

__all__ = ["RangeStream", "Tally", "UploadJob", "chunk_message", "committed_in", "finish_message",
           "header_message", "range_budget", "resumable", "staged_in"]

log = logging.getLogger("quarry")

OPEN = upload_pb2.UPLOAD_STATE_OPEN
STAGED_OR_LATER = frozenset({upload_pb2.UPLOAD_STATE_STAGED, upload_pb2.UPLOAD_STATE_VALIDATING,
                             upload_pb2.UPLOAD_STATE_VALIDATED, upload_pb2.UPLOAD_STATE_PROMOTED})
DEAD = frozenset({upload_pb2.UPLOAD_STATE_FAILED, upload_pb2.UPLOAD_STATE_CANCELLED,
                  upload_pb2.UPLOAD_STATE_EXPIRED})
MAX_CHUNK = 4 << 20  # ~the best throughput of a Python gRPC client (bigger chunks gain nothing)
RACES = ("WRONG_OFFSET", "PART_ALREADY_WRITTEN")  # the server moved on since we asked: ask again
_BROKEN = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED, grpc.StatusCode.CANCELLED,
                     grpc.StatusCode.DEADLINE_EXCEEDED})


def wait_is_over(upload: Any) -> bool:
    """Whether an upload being waited for reached the end: PROMOTED, a dead state, or VALIDATED when no
    version will be committed automatically."""
    state = upload.state
    return (state in DEAD or state == upload_pb2.UPLOAD_STATE_PROMOTED
            or (state == upload_pb2.UPLOAD_STATE_VALIDATED and not upload.auto_commit))


def check_waited(upload: Any) -> Any:
    """The upload, or UploadFailed when it ended in a dead state."""
    if upload.state in DEAD:
        failure = upload.failure
        why = f": {failure.reason}: {failure.message}" if failure.reason else ""
        state = upload_pb2.UploadState.Name(upload.state).removeprefix("UPLOAD_STATE_")
        raise UploadFailed(f"upload {upload.name} ended {state}{why}", upload)
    return upload


class Tally:
    """Bytes sent (monotonic) and bytes done (what the progress callback sees; rewinds after a broken
    stream). Shared by the streams of one upload, from several threads."""

    def __init__(self, total: int, progress: ProgressCallback | None) -> None:
        self.total = total
        self.sent = 0
        self.skipped = 0
        self.streams = 0
        self._done = 0
        self._progress = progress
        self._lock = threading.Lock()

    def skip(self, nbytes: int) -> None:
        """Bytes already committed before this call started."""
        with self._lock:
            self.skipped += nbytes
        self._move(nbytes)

    def add(self, nbytes: int) -> None:
        """Bytes handed to gRPC."""
        with self._lock:
            self.sent += nbytes
        self._move(nbytes)

    def rewind(self, nbytes: int) -> None:
        """Bytes sent that a broken stream did not commit: they will be sent again."""
        self._move(-nbytes)

    def opened(self) -> None:
        """One more stream."""
        with self._lock:
            self.streams += 1

    def _move(self, delta: int) -> None:
        with self._lock:
            self._done += delta
            done = self._done
        if self._progress is not None and delta:
            self._progress(done, self.total)


@dataclass
class UploadJob:
    """One file to upload to one dataset path, with its resume state."""

    path: Path
    identity: FileIdentity
    dataset: str
    dest: str
    content_type: str
    auto_commit: bool
    commit_message: str
    store: ResumeStore
    key: str
    state: ResumeState

    @classmethod
    def prepare(cls, store: ResumeStore, namespace: str, path: str | Path, dataset: str, dest: str | None, *,
                content_type: str = "", auto_commit: bool = False, commit_message: str = "") -> UploadJob:
        """Stat the file, load its resume state, and hash it if no earlier call did (blocking)."""
        file = Path(path)
        if not file.is_file():
            raise UsageError(f"{file}: not a file")
        dest = dest or file.name
        identity = FileIdentity.of(file)
        key = store.key(identity, namespace, dataset, dest)
        state = store.load(key)
        if state is None or len(state.sha256) != 64:
            store.prune()  # a new state is a good moment to drop ones nobody will resume
            state = ResumeState(sha256=sha256_file(file).hexdigest())
            store.save(key, state)
        return cls(file, identity, dataset, dest, content_type, auto_commit, commit_message, store, key, state)

    @property
    def size(self) -> int:
        """The file's size when the job was prepared."""
        return self.identity.size

    def matches(self, upload: Any) -> bool:
        """Whether a saved upload is this file's: same target, size and sha256, and still usable."""
        return (upload.dataset == self.dataset and upload.path == self.dest
                and upload.HasField("declared_size_bytes") and upload.declared_size_bytes == self.size
                and upload.declared_sha256 == self.state.sha256 and upload.state not in DEAD)

    def resumes(self, upload: upload_pb2.Upload | None) -> TypeGuard[upload_pb2.Upload]:
        """Whether the saved upload (None: gone) is the one to continue; if not, the saved state is dropped."""
        if upload is not None and self.matches(upload):
            return True
        self.forget()
        return False

    def plan(self, upload: Any, streams: int) -> tuple[list[Range], bool]:
        """(the ranges still to send, whether one stream continuing the committed prefix to the end does it
        all: its finish then stages the upload at once, with no CompleteUpload)."""
        ranges = plan_ranges(self.size, upload.part_size_bytes, [p.part_number for p in upload.parts], streams)
        single = len(ranges) == 1 and ranges[0].last and ranges[0].start == upload.committed_bytes
        return ranges, single

    def create_request(self, parent: str = "") -> pb.CreateUploadRequest:
        """CreateUpload with a request_id saved first, so a lost answer does not make a second upload."""
        if not self.state.request_id:
            self.state.request_id = str(uuid.uuid4())
            self.store.save(self.key, self.state)
        upload = upload_pb2.Upload(dataset=self.dataset, path=self.dest, declared_size_bytes=self.size,
                                   declared_sha256=self.state.sha256, content_type=self.content_type,
                                   auto_commit=self.auto_commit, commit_message=self.commit_message)
        return pb.CreateUploadRequest(parent=parent, upload=upload, request_id=self.state.request_id)

    def remember(self, upload: Any) -> None:
        """Save the upload's name: from now on a restart resumes it."""
        self.state.upload = upload.name
        self.state.part_size = upload.part_size_bytes
        self.store.save(self.key, self.state)

    def forget(self) -> None:
        """Drop the resume state (the upload cannot be or need not be resumed)."""
        self.store.delete(self.key)
        self.state = ResumeState(sha256=self.state.sha256)

    def check_unchanged(self) -> None:
        """Refuse to finish an upload of a file that changed while it was read."""
        if FileIdentity.of(self.path) != self.identity:
            self.forget()
            raise IntegrityError(f"{self.path} changed while it was uploaded; upload it again")

    def read(self, offset: int, size: int) -> bytes:
        """`size` bytes at `offset` (blocking)."""
        try:
            with open(self.path, "rb") as file:
                file.seek(offset)
                data = file.read(size)
        except OSError as exc:
            raise self.unreadable(exc) from exc
        if len(data) != size:
            raise self.shrank()
        return data

    def shrank(self) -> IntegrityError:
        """The error for a file that got shorter while it was read."""
        self.forget()
        return IntegrityError(f"{self.path} shrank while it was uploaded; upload it again")

    def unreadable(self, exc: OSError) -> IntegrityError:
        """The error for a file that could not be read any more."""
        return IntegrityError(f"{self.path} could not be read: {exc.strerror or exc}")

    def result(self, upload: Any, tally: Tally, resumed: bool) -> UploadResult:
        """The UploadResult of this job."""
        return UploadResult(upload, self.path, self.size, self.state.sha256, tally.sent, tally.skipped, resumed,
                            tally.streams)


def header_message(name: str, offset: int) -> pb.UploadRequest:
    """The header of a stream continuing upload `name` at `offset`."""
    return pb.UploadRequest(header=pb.UploadHeader(upload=name, write_offset=offset))


def chunk_message(data: bytes, crc: Callable[[bytes], int] | None) -> pb.UploadRequest:
    """A chunk, with its CRC32C when a fast implementation is installed."""
    chunk = pb.UploadChunk(data=data)
    if crc is not None:
        chunk.crc32c = crc(data)
    return pb.UploadRequest(chunk=chunk)


def finish_message(keep_open: bool) -> pb.UploadRequest:
    """The finish message (the sha256 was declared at creation)."""
    return pb.UploadRequest(finish=pb.UploadFinish(keep_open=keep_open))


def committed_in(upload: Any, span: Range) -> tuple[int, int]:
    """(bytes of the range's parts already committed, where the range continues): the first part of the
    range that is not written, or the range's end when every part is."""
    written = {part.part_number: part.size_bytes for part in upload.parts}
    part_size = upload.part_size_bytes
    committed = sum(size for number, size in written.items()
                    if span.start <= (number - 1) * part_size < span.stop)
    number = span.first_part
    while (number - 1) * part_size < span.stop and number in written:
        number += 1
    return committed, min(span.stop, (number - 1) * part_size)


def staged_in(responses: Iterable[Any]) -> Any:
    """The upload of the stream response that staged it, or None when it still needs CompleteUpload."""
    return next((r.upload for r in responses if r is not None and r.upload.state in STAGED_OR_LATER), None)


def resumable(error: RpcError, *, aio: bool = False) -> bool:
    """Whether a broken Upload stream may be continued from the committed parts: a break, a lost race, or a
    busy server that said when to come back (RESOURCE_EXHAUSTED with RetryInfo: its memory for streams was
    spent). grpc.aio reports its own failed write as INTERNAL without a Quarry reason: that too is a broken
    stream, not the server's word."""
    if error.code in _BROKEN or error.reason in RACES:
        return True
    if error.code is grpc.StatusCode.RESOURCE_EXHAUSTED and error.retry_delay is not None:
        return True
    return aio and error.code is grpc.StatusCode.INTERNAL and not error.reason


def retry_delay(policy: RetryPolicy, attempt: int, error: RpcError) -> float:
    """How long to wait before continuing a broken stream: at once after losing a race with a part that
    landed late, else the policy's jittered backoff, but at least half of its first step (the part in flight
    needs a moment to land, and asking too early means sending it again)."""
    if error.reason in RACES:
        return 0.0
    return max(policy.delay(attempt, error), policy.initial_backoff / 2)


def range_budget(policy: RetryPolicy, *, aio: bool = False, stopped: Callable[[], bool] = lambda: False) -> Budget:
    """The retry budget of one range's streams: it runs out after `max_total` seconds without a committed
    part, so an upload rides out a server restart or a database outage however long the file."""
    return Budget(policy, retryable=lambda error: resumable(error, aio=aio) and not stopped(),
                  delay=lambda attempt, error: retry_delay(policy, attempt, error))


class RangeStream:
    """One range of a file sent over streams that may break: where the next one starts, what the tally
    gives back, and when the range is done. No I/O: the uploaders ask GetUpload and open the streams."""

    def __init__(self, name: str, span: Range, tally: Tally) -> None:
        self.name = name
        self.span = span
        self.tally = tally
        self.start = span.start
        self.committed = 0  # bytes of the range's parts the server has committed
        self.sent = 0  # chunk bytes handed to the current stream
        self.broken: RpcError | None = None

    def opened(self) -> None:
        """A new stream starts at `start`."""
        self.sent = 0
        self.tally.opened()

    def add(self, nbytes: int) -> None:
        """Bytes handed to the current stream."""
        self.sent += nbytes
        self.tally.add(nbytes)

    def broke(self, error: RpcError) -> None:
        """The current stream ended with `error`; the next try asks the server where to go on."""
        self.broken = error

    def resume(self, upload: Any, budget: Budget) -> bool:
        """Take the server's view of the upload after a break: move `start` to the first part of the range
        not committed, giving back to the tally what the broken stream sent in vain. True when no stream is
        needed any more (a finish that landed although its answer was lost, or every part is committed)."""
        error, self.broken = self.broken, None
        if upload.state in STAGED_OR_LATER:
            return True
        if upload.state != OPEN:
            assert error is not None
            budget.spend()  # the upload is over: this error is the last word
            raise error
        previous = self.start
        now, self.start = committed_in(upload, self.span)
        log.info("stream of %s from byte %d broke after %d bytes (%s); continuing at byte %d", self.name, previous,
                 self.sent, error, self.start)
        self.tally.rewind(self.sent - (now - self.committed))
        if now > self.committed:
            budget.progressed()  # a new run of failures, not the same one
        self.committed = now
        return self.start >= self.span.stop and self.span.size > 0
