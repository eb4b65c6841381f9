"""SHA-256 of files (streamed, never loaded whole) and an optional fast CRC32C of chunks.

zlib has no CRC32C (Castagnoli), and a pure-Python one would be slower than the network, so chunk CRCs
are sent only when `google-crc32c` with its C extension is installed (`pip install quarry-client[crc32c]`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

__all__ = ["crc32c_function", "sha256_file"]

BLOCK = 8 << 20


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
