"""A whole version downloaded into a directory: several files at once, big ones in parallel ranges, resumable,
each verified by sha256. The file work, shared by Client and AsyncClient (which fetch the ranges).

Each file is cut into pieces of PIECE_BYTES, each fetched by one ranged read and written at its offset of
`PATH.partial`. `PATH.partial.json` records the file's version, sha256 and size and the pieces already
durable (written, then fsynced, then recorded), so a download run again fetches only the others. When every
piece is there, the file is hashed: the right sha256 renames it into place, a wrong one removes it
(IntegrityError). A file already in place with the right size and sha256 is skipped without a byte fetched.
"""

from __future__ import annotations

import errno
import fnmatch
import json
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from quarry._checksums import sha256_file
from quarry._exceptions import IntegrityError, UsageError
from quarry._reads import FoundFile
from quarry._results import ProgressCallback

__all__ = ["PIECE_BYTES", "FileJob", "Piece", "VersionDownload", "VersionDownloadResult"]

PIECE_BYTES = 16 << 20


@dataclass(frozen=True)
class Piece:
    """One range of one file."""

    job: FileJob
    index: int
    offset: int
    length: int


@dataclass
class VersionDownloadResult:
    """A downloaded version: where it went, its files, and what was fetched or already there."""

    directory: Path
    version: str
    files: list[str]
    skipped: list[str]  # already in place with the right sha256
    bytes_received: int
    bytes_resumed: int  # bytes of pieces an earlier, interrupted download had made durable

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready summary."""
        return {"directory": str(self.directory), "version": self.version, "files": self.files,
                "skipped": self.skipped, "bytes_received": self.bytes_received, "bytes_resumed": self.bytes_resumed}


class FileJob:
    """One file of the version: its partial file, which pieces are durable, and the final check."""

    def __init__(self, directory: Path, found: FoundFile, piece_bytes: int) -> None:
        self.found = found
        self.size = found.file.size_bytes
        self.sha256 = found.file.sha256
        self.target = directory / found.path
        if directory.resolve() not in self.target.resolve().parents:
            raise UsageError(f"{found.path!r} would land outside {directory}")
        self.partial = self.target.with_name(self.target.name + ".partial")
        self.meta = self.target.with_name(self.target.name + ".partial.json")
        self.pieces = [(offset, min(piece_bytes, self.size - offset)) for offset in range(0, self.size, piece_bytes)]
        self.done: set[int] = set()
        self.resumed = 0
        self._fd = -1
        self._lock = threading.Lock()

    def in_place(self) -> bool:
        """Whether the target already holds exactly this file (blocking: it may hash it)."""
        try:
            if self.target.stat().st_size != self.size:
                return False
        except OSError:
            return False
        return sha256_file(self.target).hexdigest() == self.sha256

    def open(self) -> list[Piece]:
        """Open the partial file, keeping the pieces an earlier download of the same file made durable; the
        pieces still to fetch (blocking)."""
        source = {"version": self.found.version, "path": self.found.path, "sha256": self.sha256, "size": self.size}
        try:
            saved = json.loads(self.meta.read_text())
        except (OSError, ValueError):
            saved = {}
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.partial, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o666)
        same = isinstance(saved, dict) and saved.get("source") == source and os.fstat(self._fd).st_size == self.size
        self.done = {i for i in saved.get("done", []) if isinstance(i, int) and 0 <= i < len(self.pieces)} \
            if same else set()
        if not same:
            os.ftruncate(self._fd, 0)
            os.ftruncate(self._fd, self.size)
        self.resumed = sum(self.pieces[i][1] for i in self.done)
        self._source = source
        self._save()
        return [Piece(self, i, offset, length) for i, (offset, length) in enumerate(self.pieces) if i not in self.done]

    def _save(self) -> None:
        self.meta.write_text(json.dumps({"source": self._source, "done": sorted(self.done)}))

    def write(self, piece: Piece, data: bytes) -> None:
        """Write a piece at its offset and make it durable, then record it (blocking)."""
        if len(data) != piece.length:
            raise IntegrityError(f"{self.found.path}: got {len(data)} bytes at {piece.offset}, expected {piece.length}")
        view = memoryview(data)
        offset = piece.offset
        try:
            while view:
                written = os.pwrite(self._fd, view, offset)
                if not written:
                    raise OSError(errno.EIO, "the file system took none of the bytes written")
                view, offset = view[written:], offset + written
            os.fdatasync(self._fd)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(self.partial)) from exc
        with self._lock:
            self.done.add(piece.index)
            self._save()

    @property
    def complete(self) -> bool:
        """Whether every piece is durable."""
        return len(self.done) == len(self.pieces)

    def finish(self) -> None:
        """Check the whole file's sha256 and move it into place; IntegrityError (and the bytes removed) if it
        does not match (blocking)."""
        self.close()
        got = sha256_file(self.partial).hexdigest()
        if got != self.sha256:
            self.partial.unlink(missing_ok=True)
            self.meta.unlink(missing_ok=True)
            raise IntegrityError(f"{self.found.path}: downloaded bytes have sha256 {got}, the server said "
                                 f"{self.sha256}; the partial file was removed")
        os.replace(self.partial, self.target)
        self.meta.unlink(missing_ok=True)

    def close(self) -> None:
        """Close the partial file (it stays, with its record, for a later run)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@dataclass
class VersionDownload:
    """The files of one version download and its progress."""

    directory: Path
    version: str
    jobs: list[FileJob]
    skipped: list[str]
    progress: ProgressCallback | None = None
    total: int = 0
    received: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def plan(cls, directory: str | os.PathLike[str], version: str, found: Iterable[FoundFile],
             include: Iterable[str], exclude: Iterable[str],
             progress: ProgressCallback | None) -> tuple[VersionDownload, list[Piece]]:
        """The files to fetch (those matching `include`, none matching `exclude`, not already in place) and
        their pieces still missing (blocking: it hashes files already there)."""
        root = Path(directory)
        root.mkdir(parents=True, exist_ok=True)
        wanted, unwanted = list(include), list(exclude)
        chosen = [f for f in found if (not wanted or any(fnmatch.fnmatchcase(f.path, p) for p in wanted))
                  and not any(fnmatch.fnmatchcase(f.path, p) for p in unwanted)]
        download = cls(root, version, [], [], progress)
        pieces: list[Piece] = []
        for item in chosen:
            job = FileJob(root, item, PIECE_BYTES)
            if job.in_place():
                download.skipped.append(item.path)
                continue
            download.jobs.append(job)
            pieces += job.open()
        download.total = sum(job.size - job.resumed for job in download.jobs)
        # Big files first, so their ranges spread over the workers while the small files fill the gaps.
        pieces.sort(key=lambda p: (-p.job.size, p.job.found.path, p.index))
        if progress is not None:
            progress(0, download.total)
        return download, pieces

    def received_piece(self, piece: Piece, data: bytes) -> None:
        """Write one fetched piece and count it (blocking)."""
        piece.job.write(piece, data)
        with self._lock:
            self.received += len(data)
            done, total = self.received, self.total
        if self.progress is not None:
            self.progress(done, total)

    def finish(self) -> VersionDownloadResult:
        """Verify and place every file (blocking)."""
        for job in self.jobs:
            if not job.complete:
                raise IntegrityError(f"{job.found.path}: pieces are missing")
            job.finish()
        return VersionDownloadResult(self.directory, self.version, [j.found.path for j in self.jobs], self.skipped,
                                     self.received, sum(j.resumed for j in self.jobs))

    def close(self) -> None:
        """Close every partial file (kept for a later run)."""
        for job in self.jobs:
            job.close()
