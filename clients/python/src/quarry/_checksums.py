"""SHA-256 of files (streamed, never loaded whole), hashed while they are sent, and an optional fast CRC32C.

An upload's sha256 is computed by `FileDigest` in a thread of its own while the streams send the file: hashlib
drops the GIL for large buffers, so hashing overlaps with sending instead of coming first (a serial pass that
cost about a third of an upload's time). It reads the file in order once more; the pages are cached, since the
streams have just read them or are about to.

zlib has no CRC32C (Castagnoli), and a pure-Python one would be slower than the network, so chunk CRCs
are sent only when `google-crc32c` with its C extension is installed (`pip install quarry-client[crc32c]`).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path

__all__ = ["FileDigest", "crc32c_function", "sha256_file"]

BLOCK = 8 << 20
INLINE = BLOCK  # files this small are hashed at once: a thread would cost more than it saves


def sha256_file(path: Path, *, start: int = 0, stop: int | None = None,
                digest: hashlib._Hash | None = None) -> hashlib._Hash:
    """The SHA-256 state after hashing bytes [start, stop) of a file, read in blocks."""
    digest = digest or hashlib.sha256()
    with open(path, "rb", buffering=0) as file:
        file.seek(start)
        left = None if stop is None else stop - start
        buffer = bytearray(BLOCK)
        view = memoryview(buffer)
        while left is None or left > 0:
            want = BLOCK if left is None else min(BLOCK, left)
            got = file.readinto(view[:want])
            if not got:
                break
            digest.update(view[:got])  # hashlib drops the GIL for large buffers
            if left is not None:
                left -= got
    return digest


def crc32c_function() -> Callable[[bytes], int] | None:
    """google-crc32c's C implementation when installed, else None (chunks then go without a CRC)."""
    try:
        import google_crc32c
    except ImportError:
        return None
    if getattr(google_crc32c, "implementation", "") != "c":
        return None
    value: Callable[[bytes], int] = google_crc32c.value
    return value


class FileDigest:
    """The sha256 of bytes [0, size) of a file, computed in a thread started at once."""

    def __init__(self, path: Path, size: int) -> None:
        self._path = path
        self._size = size
        self._hexdigest = ""
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if size <= INLINE:
            self._run()
        else:
            self._thread = threading.Thread(target=self._run, name="quarry-sha256", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            digest = hashlib.sha256()
            with open(self._path, "rb", buffering=0) as file:
                buffer = bytearray(min(BLOCK, max(1, self._size)))
                view = memoryview(buffer)
                left = self._size
                while left > 0 and not self._stop.is_set():
                    got = file.readinto(view[:min(len(view), left)])
                    if not got:
                        raise EOFError(f"{self._path} ended {left} bytes before its size")
                    digest.update(view[:got])  # hashlib drops the GIL for large buffers
                    left -= got
            self._hexdigest = digest.hexdigest()
        except BaseException as exc:  # kept for `hexdigest`, which the caller's thread calls
            self._error = exc

    def hexdigest(self) -> str:
        """The sha256 (waiting for the thread); its OSError or EOFError if the file could not be read whole."""
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error
        if self._stop.is_set():
            raise RuntimeError("the digest was cancelled")
        return self._hexdigest

    def cancel(self) -> None:
        """Stop hashing (the upload failed or was interrupted)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
