"""Resume state of uploads, kept on disk so a restarted process continues where the last one stopped.

One small JSON file per upload under `{cache_dir}/uploads/`, named by a hash of the file's identity
(absolute path, size, mtime_ns) and its target (namespace, dataset, path). A file that changed gets a new
identity, so stale state is never applied to new bytes; before an upload is continued, the server's
GetUpload is checked, and the CRC32C of every part it committed against the same bytes of the file (the
uploaders do that: a file rewritten with its size and time kept is caught there, with no hash of the whole
file). Losing the cache costs only the resume, so write failures are logged, not raised.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["FileIdentity", "ResumeState", "ResumeStore"]

log = logging.getLogger("quarry")
STALE_SECONDS = 14 * 24 * 3600  # far past any upload expiry: such state can only point at a dead upload


@dataclass(frozen=True)
class FileIdentity:
    """What says "the same bytes" without reading them: absolute path, size and modification time."""

    path: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> FileIdentity:
        """The identity of a file as it is now."""
        absolute = path.resolve()
        stat = absolute.stat()
        return cls(str(absolute), stat.st_size, stat.st_mtime_ns)


@dataclass
class ResumeState:
    """What a resumed upload needs: the request_id of its create and, once created, the upload's name."""

    part_size: int = 0
    upload: str = ""
    request_id: str = ""
    updated: float = 0.0


class ResumeStore:
    """Resume states in a directory, one JSON file each."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory / "uploads"

    @staticmethod
    def key(identity: FileIdentity, namespace: str, dataset: str, dest: str) -> str:
        """The state's file name for this file and target."""
        text = json.dumps([asdict(identity), namespace, dataset, dest], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:40]

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def load(self, key: str) -> ResumeState | None:
        """The saved state, or None when there is none (or it is unreadable)."""
        try:
            data = json.loads(self._path(key).read_text())
            return ResumeState(**{k: data[k] for k in ResumeState.__dataclass_fields__ if k in data})
        except (OSError, ValueError, TypeError):
            return None

    def save(self, key: str, state: ResumeState) -> None:
        """Write the state atomically (a killed process leaves the old file or the new one, never half)."""
        state.updated = time.time()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            temporary = self._path(key).with_suffix(f".{os.getpid()}.tmp")
            temporary.write_text(json.dumps(asdict(state)))
            os.replace(temporary, self._path(key))
        except OSError as exc:
            log.warning("could not save upload resume state in %s: %s", self.directory, exc)

    def delete(self, key: str) -> None:
        """Forget the state (the upload finished or cannot be resumed)."""
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not delete upload resume state %s: %s", self._path(key), exc)

    def prune(self, older_than: float = STALE_SECONDS) -> None:
        """Delete states nobody touched for a long time."""
        cutoff = time.time() - older_than
        try:
            for entry in self.directory.glob("*.json"):
                if entry.stat().st_mtime < cutoff:
                    entry.unlink(missing_ok=True)
        except OSError:
            pass
