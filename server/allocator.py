"""Keep large buffers out of the C heap, so memory freed after an upload goes back to the system.

Upload parts pass through buffers of a few MiB. glibc's malloc raises its mmap threshold each time such a
block is freed, after which equal blocks come from the heap, where freed space fragments and stays in the
process: with several S3 streams the server's resident size roughly doubled for the same live data. A
fixed threshold (which also turns off the adjustment) keeps every block of 1 MiB or more in its own
mapping, returned on free. Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # from glibc's malloc.h
MMAP_THRESHOLD_BYTES = 1 << 20


def map_large_blocks() -> bool:
    """Set glibc's mmap threshold to 1 MiB; False where that is not possible."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    if not done:
        log.debug("mallopt(M_MMAP_THRESHOLD) refused")
    return done
