"""A directory upload as one batch: progress over all files, the order of files, the version it commits."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Sequence

import grpc

from quarry._calls import Calls, Unary
from quarry._directory import DirectoryFile, Selection
from quarry._exceptions import DeadlineExceeded, UploadFailed
from quarry._results import DirectoryUploadResult, ProgressCallback, UploadResult
from quarry._uploads import UploadJob
from quarry.v1 import version_pb2

__all__ = ["Aggregate", "Batch", "check_version", "commit_request_id", "split_by_size", "version_done",
           "version_ready", "version_timeout"]

BIG = 64 << 20  # files from this size get every stream to themselves, one after another


class Aggregate:
    """One progress callback over many files: (bytes done in all files, bytes of all files)."""

    def __init__(self, total: int, progress: ProgressCallback | None) -> None:
        self.total = total
        self.progress = progress
        self._done: dict[str, int] = {}
        self._lock = threading.Lock()

    def callback(self, key: str) -> ProgressCallback | None:
        """The callback for one file."""
        if self.progress is None:
            return None

        def report(done: int, _total: int) -> None:
            with self._lock:
                self._done[key] = done
                overall = sum(self._done.values())
            assert self.progress is not None
            self.progress(overall, self.total)

        return report


def split_by_size(files: Sequence[DirectoryFile]) -> tuple[list[DirectoryFile], list[DirectoryFile]]:
    """(big files, largest first; small files): big ones use parallel streams, small ones go several at once."""
    big = sorted((f for f in files if f.size >= BIG), key=lambda f: -f.size)
    return big, [f for f in files if f.size < BIG]


def commit_request_id(namespace: str, dataset: str, uploads: Iterable[str]) -> str:
    """A request_id fixed by the uploads, so committing the same uploads again returns the first version."""
    text = "\n".join([namespace, dataset, *sorted(uploads)])
    return "dir-" + hashlib.sha256(text.encode()).hexdigest()[:32]


def version_done(version: version_pb2.Version) -> bool:
    """Whether a version reached READY or FAILED."""
    return version.state in (version_pb2.VERSION_STATE_READY, version_pb2.VERSION_STATE_FAILED)


def version_ready(version: version_pb2.Version) -> bool:
    """Whether a version is READY."""
    return bool(version.state == version_pb2.VERSION_STATE_READY)


def check_version(version: version_pb2.Version) -> version_pb2.Version:
    """The version, or UploadFailed when it FAILED."""
    if version.state == version_pb2.VERSION_STATE_FAILED:
        failure = version.failure
        raise UploadFailed(f"version {version.name} FAILED: {failure.reason}: {failure.message}", version)
    return version


def version_timeout(name: str) -> DeadlineExceeded:
    """The error for a version that did not finish in time."""
    return DeadlineExceeded(grpc.StatusCode.DEADLINE_EXCEEDED, f"{name} did not become READY in time")


class Batch:
    """A directory upload: its files (big ones one after another with every stream, small ones several at a
    time), one progress over all, and the version that commits them."""

    def __init__(self, selection: Selection, progress: ProgressCallback | None) -> None:
        self.selection = selection
        self.total = Aggregate(sum(f.size for f in selection.files), progress)
        self.big, self.small = split_by_size(selection.files)
        self.done: list[tuple[UploadJob, UploadResult]] = []

    def commit(self, calls: Calls, dataset: str) -> Unary[version_pb2.Version]:
        """CommitVersion of every uploaded file, with a request_id fixed by the uploads (a re-run after a
        failed commit commits the same staged uploads once: their resume states stay until it succeeds)."""
        names = [result.upload.name for _, result in self.done]
        return calls.commit_version(dataset, names, delete_paths=(), message=self.selection.message,
                                    base_version="", request_id=commit_request_id(calls.namespace, dataset, names))

    def forget(self) -> None:
        """Drop the uploads' resume states (once they are committed)."""
        for job, _ in self.done:
            job.forget()

    def result(self, version: version_pb2.Version) -> DirectoryUploadResult:
        """The result of the committed batch."""
        return DirectoryUploadResult([result for _, result in self.done], version, self.selection.ignored)
