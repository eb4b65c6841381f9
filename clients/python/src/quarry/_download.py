"""Downloads into a partial file that a later call continues, verified by sha256 before it is renamed.

Bytes go to `OUT.partial`, and `OUT.partial.json` records where they come from (version, path) and the
file's sha256 and size as ReadFile reported them. A later download of the same source first reads one
byte, to learn whether the file is still the same: if its sha256 differs (e.g. "latest" moved on, maybe to
a shorter file), it starts over; if not, it continues at the partial file's size. ReadFile is called in
windows of at most WINDOW bytes, so each call gets a deadline that fits its size.

A client with more than one stream learns the file's sha256 and size from the version's listing instead
(`adopt`), and fetches a large file in RANGE_BYTES ranges, several at once, running ahead of the writer by a
few ranges only. The ranges are taken in order: each is handed to a writer thread (`RangeWriter`: past the
page cache where the platform allows) and hashed here while it is written, so the partial file is always a
prefix of the file (what a later call continues).

Every byte is written (a short write is continued, a write that makes no progress fails) and the file is
fsynced before it is renamed into place: a download that reports success has its bytes on disk. This
module does the file I/O; the clients do the network I/O and feed it messages.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from quarry._calls import Stream, stream_timeout
from quarry._checksums import sha256_file
from quarry._exceptions import IntegrityError
from quarry._range_writer import RangeWriter
from quarry._results import DownloadResult, ProgressCallback
from quarry.v1 import dataset_service_pb2 as dpb

__all__ = ["RANGES_FROM", "RANGE_BYTES", "WINDOW", "Download"]

WINDOW = 256 << 20
RANGE_BYTES = 8 << 20  # one ranged ReadFile of a parallel download; (streams + 1) of them are held at most
RANGES_FROM = 4 * RANGE_BYTES  # less than this left to fetch: one stream, as ranges would gain nothing
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class Download:
    """The state of one download: the partial file, its running sha256, and what the server said."""

    def __init__(self, out: str | os.PathLike[str], version: str, path: str, progress: ProgressCallback | None,
                 timeout: float) -> None:
        self.out = Path(out)
        self.version = version
        self.path = path
        self.source = f"{version}:{path}"
        self.progress = progress
        self.timeout = timeout
        self.partial = self.out.with_name(self.out.name + ".partial")
        self.meta = self.out.with_name(self.out.name + ".partial.json")
        self.sha256 = ""
        self.size: int | None = None
        self.position = 0
        self.resumed = 0
        self.received = 0
        self._window_messages = 0
        self._checked = True  # whether the server's file is known to be the partial file's
        self._digest = hashlib.sha256()
        self._file: Any = None
        self._writer: RangeWriter | None = None

    def open(self) -> None:
        """Open the partial file, keeping what an earlier download of the same source wrote (blocking)."""
        saved = self._saved()
        if saved and self.partial.exists():
            self.sha256, self.size = saved["sha256"], int(saved["size"])
            self.position = min(self.partial.stat().st_size, self.size)
            self._digest = sha256_file(self.partial, stop=self.position)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.partial, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o666)
        self._file = open(descriptor, "r+b", buffering=0)  # noqa: SIM115  (unbuffered: write() says what it wrote)
        self._file.truncate(self.position)
        self._file.seek(self.position)
        self.resumed = self.position
        self._checked = self.position == 0

    def _saved(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.meta.read_text())
        except (OSError, ValueError):
            return None
        if data.get("source") != self.source or not isinstance(data.get("size"), int):
            return None
        return data

    @property
    def complete(self) -> bool:
        """Whether every byte is here."""
        return self.size is not None and self.position >= self.size

    def adopt(self, sha256: str, size: int) -> None:
        """What the server's listing says the file is: a partial file of another file starts over."""
        if self.sha256 and self.sha256 != sha256:
            self._restart()
        if not self.sha256:
            self.sha256, self.size = sha256, size
            self.meta.write_text(json.dumps({"source": self.source, "sha256": self.sha256, "size": self.size}))
        self._checked = True  # the listing said which file it is: no first byte to read again

    def ranges(self) -> list[tuple[int, int]]:
        """(offset, length) of what is left, in ranges of at most RANGE_BYTES that end on multiples of it (a
        resumed download's first range is shorter, so the others start block-aligned); empty when too little
        is left to split."""
        assert self.size is not None, "adopt() first"
        if self.size - self.position < RANGES_FROM:
            return []
        bounds = [self.position, *range((self.position // RANGE_BYTES + 1) * RANGE_BYTES, self.size, RANGE_BYTES),
                  self.size]
        return [(start, end - start) for start, end in zip(bounds, bounds[1:], strict=False)]

    def write_range(self, offset: int, chunks: list[bytes]) -> None:
        """Queue the bytes of the range at `offset`, the next one in order, to be written in the background,
        and hash them meanwhile (blocking; raises an earlier range's write failure)."""
        if offset != self.position:
            raise IntegrityError(f"a range at offset {offset} arrived to be written at {self.position}")
        if self._writer is None:
            self._writer = RangeWriter(self.partial, self._file.fileno(), RANGE_BYTES)
        self._writer.write(offset, chunks)
        for data in chunks:
            self._digest.update(data)
            self.position += len(data)
            self.received += len(data)
        if self.progress is not None:
            self.progress(self.position, self.size or 0)

    def _stop_writer(self) -> None:
        """Wait for the range writer's last writes (raising their failure) and let it go."""
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                writer.drain()
            finally:
                writer.close()
            self._file.seek(self.position)

    def read_call(self) -> Stream:
        """The ReadFile stream of the next window, from the first byte not yet written (or of the first byte
        alone, while the partial file is not known to hold the server's file)."""
        self._window_messages = 0
        offset, limit = (self.position, WINDOW) if self._checked else (0, 1)
        request = dpb.ReadFileRequest(version=self.version, path=self.path, offset=offset, limit=limit)
        return Stream("datasets", "ReadFile", request, stream_timeout(limit, self.timeout))

    def accept(self, message: Any) -> bool:
        """Write one ReadFile message at the current position (blocking). False when the file changed since
        the partial download began: it starts over, and the caller reads again from byte 0."""
        if self.sha256 and message.sha256 != self.sha256:
            self._restart()
            return False
        if not self._checked:  # the first byte again: the same file, so the partial file stands
            self._checked = True
            self._window_messages += 1
            return True
        if not self.sha256:
            self.sha256, self.size = message.sha256, message.file_size_bytes
            self.meta.write_text(json.dumps({"source": self.source, "sha256": self.sha256, "size": self.size}))
        if message.offset != self.position:
            raise IntegrityError(f"ReadFile sent bytes at offset {message.offset}; expected {self.position}")
        data = message.data  # each read of a bytes field is a fresh copy of it: read it once
        self._write(data)
        self._digest.update(data)
        self._window_messages += 1
        self.position += len(data)
        self.received += len(data)
        if self.progress is not None:
            self.progress(self.position, self.size or 0)
        return True

    def _write(self, data: bytes) -> None:
        self._stop_writer()  # ranges written in the background come first
        view = memoryview(data)
        try:
            while view:
                written = self._file.write(view)
                if not written:  # a regular file that takes no byte and says nothing: do not spin on it
                    raise OSError(errno.EIO, "the file system took none of the bytes written")
                view = view[written:]
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(self.partial)) from exc

    def window_done(self) -> None:
        """A window's stream ended. One that sent no message: only an empty file from offset 0 does that."""
        if self._window_messages:
            return
        if not self._checked:  # not even a first byte: the file is empty now, the partial file is not
            self._restart()
            return
        if self.position == 0 and self.size in (None, 0):
            self.sha256, self.size = self.sha256 or EMPTY_SHA256, 0
        elif not self.complete:
            raise IntegrityError(f"ReadFile sent nothing at offset {self.position} of {self.size} bytes")

    def _restart(self) -> None:
        self._stop_writer()
        self._file.seek(0)
        self._file.truncate(0)
        self._digest = hashlib.sha256()
        self.sha256, self.size, self.position, self.resumed, self._checked = "", None, 0, 0, True

    def finish(self) -> DownloadResult:
        """Check size and sha256, make the bytes durable, then move the partial file to its name (blocking)."""
        self._stop_writer()
        got = self._digest.hexdigest()
        if got != self.sha256 or self.position != self.size:
            self.close()
            self.partial.unlink(missing_ok=True)
            self.meta.unlink(missing_ok=True)
            raise IntegrityError(f"downloaded {self.source} has sha256 {got} ({self.position} bytes), the server "
                                 f"said {self.sha256} ({self.size} bytes); the partial file was removed")
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        os.replace(self.partial, self.out)
        _sync_directory(self.out.parent)
        self.meta.unlink(missing_ok=True)
        return DownloadResult(self.out, self.position, self.sha256, self.received, self.resumed)

    def close(self) -> None:
        """Close the partial file: it stays for a later call to continue, unless it holds nothing."""
        if self._writer is not None:
            self._writer.close()  # what it was writing lands (or fails) before the file is let go
            self._writer = None
        if self._file is not None:
            self._file.close()
            self._file = None
            if self.position == 0:
                self.partial.unlink(missing_ok=True)
                self.meta.unlink(missing_ok=True)


def _sync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable, where the platform can (not on Windows)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
