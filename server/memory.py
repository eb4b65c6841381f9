"""Giving the C heap's free memory back to the system once the server's streams are done with it.

Stream buffers are large (chunks of 1-8 MiB, part buffers, S3 parts). glibc serves blocks that size from
the heap once one has been freed (its mmap threshold adapts upwards), which is what makes them cheap: a block
mapped afresh for every message costs a page fault per 4 KiB (measured here, a 1 MiB message: ~600 us mapped
afresh against ~40 us from the heap; with every 1 MiB block mapped, as this server once did, receiving an
upload spent most of its time there). The price is that memory freed in the middle of the heap stays with
the process. So when the buffer budget has nothing held (the last stream let go) and stays so for a moment,
`malloc_trim(0)` returns the free pages of every arena, and the process settles back to its idle size.
Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

SETTLE_SECONDS = 1.0  # how long the budget stays idle before the heap is trimmed: not between two streams


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = (ctypes.c_size_t,)
    trim.restype = ctypes.c_int
    return trim


class HeapTrimmer:
    """Trims the C heap (in a worker thread) once the budget has been idle for SETTLE_SECONDS."""

    def __init__(self, idle: Callable[[], bool], settle: float = SETTLE_SECONDS) -> None:
        self._idle = idle
        self._settle = settle
        self._trim = _malloc_trim()
        self._pending: asyncio.TimerHandle | None = None
        self._running: asyncio.Future[int] | None = None
        self.trims = 0

    def __call__(self) -> None:
        """The budget has just become idle: trim after a moment, unless a stream starts meanwhile."""
        if self._trim is None or self._pending is not None:
            return
        self._pending = asyncio.get_running_loop().call_later(self._settle, self._start)

    def _start(self) -> None:
        self._pending = None
        if not self._idle() or self._running is not None:
            return
        assert self._trim is not None
        self._running = asyncio.ensure_future(asyncio.to_thread(self._trim, 0))
        self._running.add_done_callback(self._done)

    def _done(self, done: asyncio.Future[int]) -> None:
        self._running = None
        self.trims += 1
        if not done.cancelled() and done.exception() is not None:
            log.warning("malloc_trim failed", extra={"error": repr(done.exception())})

    @property
    def pending(self) -> bool:
        """Whether a trim is waiting for its moment or running."""
        return self._pending is not None or self._running is not None

    def close(self) -> None:
        """Drop a pending trim (the server stops)."""
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
