"""A directory upload as one batch: progress over all files, the order of files, the version it commits."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import grpc

from quarry._directory import DirectoryFile
from quarry._exceptions import DeadlineExceeded, UploadFailed
from quarry._results import ProgressCallback
from quarry.v1 import version_pb2

__all__ = ["Aggregate", "check_version", "commit_request_id", "split_by_size", "version_done", "version_timeout"]

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


def version_done(version: Any) -> bool:
    """Whether a version reached READY or FAILED."""
    return version.state in (version_pb2.VERSION_STATE_READY, version_pb2.VERSION_STATE_FAILED)


def check_version(version: Any) -> Any:
    """The version, or UploadFailed when it FAILED."""
    if version.state == version_pb2.VERSION_STATE_FAILED:
        failure = version.failure
        raise UploadFailed(f"version {version.name} FAILED: {failure.reason}: {failure.message}", version)
    return version


def version_timeout(name: str) -> DeadlineExceeded:
    """The error for a version that did not finish in time."""
    return DeadlineExceeded(grpc.StatusCode.DEADLINE_EXCEEDED, f"{name} did not become READY in time")
