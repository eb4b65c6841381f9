"""What the sync and async uploaders share: the job (file, target, resume state), messages and arithmetic.

An upload job is hashed once (the sha256 is kept in the resume state, so a restarted process does not
hash again), created with a request_id saved beforehand (so a create whose answer was lost is not
duplicated), and checked against the server before it is resumed.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quarry._checksums import sha256_file
from quarry._exceptions import IntegrityError, UploadFailed, UsageError
from quarry._plan import Range
from quarry._results import ProgressCallback, UploadResult
from quarry._resume import FileIdentity, ResumeState, ResumeStore
from quarry.v1 import upload_pb2
from quarry.v1 import upload_service_pb2 as pb

__all__ = ["Tally", "UploadJob", "chunk_message", "committed_in", "finish_message", "header_message"]

OPEN = upload_pb2.UPLOAD_STATE_OPEN
STAGED_OR_LATER = frozenset({upload_pb2.UPLOAD_STATE_STAGED, upload_pb2.UPLOAD_STATE_VALIDATING,
                             upload_pb2.UPLOAD_STATE_VALIDATED, upload_pb2.UPLOAD_STATE_PROMOTED})
DEAD = frozenset({upload_pb2.UPLOAD_STATE_FAILED, upload_pb2.UPLOAD_STATE_CANCELLED,
                  upload_pb2.UPLOAD_STATE_EXPIRED})
MAX_CHUNK = 4 << 20  # ~the best throughput of a Python gRPC client (bigger chunks gain nothing)


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
