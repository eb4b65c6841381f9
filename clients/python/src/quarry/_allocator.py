"""`tune_allocator`: glibc's malloc set up for a process that moves large files.

A transfer allocates a block the size of a message (about 1 MiB) for every message it sends or receives, and
frees it soon after, often in another thread than the one that allocated it. With glibc's default, adaptive
thresholds those blocks keep being mapped afresh and the top of each arena trimmed, so every block costs a
page fault per 4 KiB. Measured here: a bare gRPC client reading a file ran at 1.5 GB/s with 0.8 CPU-s per
GiB by default, and at 2.9 GB/s with 0.35 CPU-s per GiB with the thresholds fixed; a download through this
SDK took 1.8 CPU-s per GiB, and 1.2.

The thresholds are process-wide, so the SDK never changes them by itself: the `quarry` client commands do,
and a program of yours that moves large files can call this once. The price is memory kept for reuse: up to
TRIM_THRESHOLD_BYTES free at the top of each malloc arena before it goes back to the system. (The server does
not call it: under 64 concurrent uploads its peak grew from 320 to 409 MiB with it, and its memory bound
matters more there.) Elsewhere than glibc (macOS, Windows, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["MMAP_THRESHOLD_BYTES", "TRIM_THRESHOLD_BYTES", "tune_allocator"]

# mallopt(3) parameters (malloc.h), and the values set.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's largest on 64-bit: every message and chunk comes from the heap
TRIM_THRESHOLD_BYTES = 64 << 20


def tune_allocator() -> bool:
    """Fix glibc's mmap and trim thresholds for large transfers (see the module); False where there is no
    glibc mallopt, or it refused."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD,
                                                                                  TRIM_THRESHOLD_BYTES))
