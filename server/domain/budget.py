"""The server-wide buffer budget: every byte the server holds for upload and download streams is granted here.

A stream takes its grant before it holds the bytes and gives it back when it lets them go, so the bytes held
never exceed `QUARRY_MAX_BUFFER_BYTES` however many clients connect or stall. What a stream holds, and so
takes (see `StreamCosts`):

- its transport window: the bytes gRPC accepts on a stream before the handler reads them (the HTTP/2
  stream window, `QUARRY_STREAM_WINDOW_BYTES`), taken at once or the stream is refused at once;
- the message in hand and the next one arriving (a chunk can be larger than the window: gRPC widens it for a
  message the handler is waiting for);
- its part writer's buffers (the store says how many: `ObjectStore.part_buffer_bytes`); a second writer, for
  the next part filling while the last one lands, is borrowed only if free at once (`WriterBytes`);
- for a download, the messages being read from the store and sent; for a read of a table (Arrow Flight), the
  store's read, the block being parsed and the batch being sent.

When the budget is spent a new stream waits (at most `QUARRY_BUFFER_WAIT_SECONDS`, first come first served)
and then gets RESOURCE_EXHAUSTED with RetryInfo; nothing is half-started, so it can simply be tried again.
A waiting stream holds its window already (the client may be filling it): the windows of waiting streams
come from a quarter of the budget set aside for them (past that, a new stream is refused at once), and the
grants of streams at work from the other three quarters, so a crowd of waiting streams never starves them.
A stream that never sends cannot hold its grant for long: `QUARRY_STREAM_IDLE_SECONDS` ends it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from server import metrics
from server.model.errors import BufferBudgetSpent, ResourceExhausted

MiB = 1 << 20


@dataclass(frozen=True)
class StreamCosts:
    """What one stream may hold, from the settings."""

    window: int  # the transport window of a stream
    max_chunk: int  # the largest message a client may send

    @property
    def upload(self) -> int:
        """An upload stream, besides its part writers: its window, the chunk in hand and the next one."""
        return self.window + 2 * self.max_chunk

    @property
    def download(self) -> int:
        """A download stream: the message being read from the store, the one being sent, and the window's."""
        return self.window + 3 * MiB

    @property
    def table(self) -> int:
        """A read of a table (Arrow Flight's DoGet): a 4 MiB read from the store, a 4 MiB block being parsed,
        and a record batch of up to 64K rows being sent."""
        return self.window + 16 * MiB


class BufferBudget:
    """Bytes granted to streams, never more than `limit` at once; takers wait first come, first served."""

    def __init__(self, limit: int, wait_seconds: float) -> None:
        self.queue_limit = limit // 4  # for the windows of streams waiting for their grant
        self.limit = limit - self.queue_limit  # for the grants of streams at work
        self.wait_seconds = wait_seconds
        self.held = 0
        self.queued = 0
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()
        metrics.BUFFER_LIMIT.set(limit)

    def _set(self, held: int) -> None:
        self.held = held
        metrics.BUFFER_HELD.set(self.held + self.queued)

    def take_now(self, nbytes: int) -> bool:
        """Take `nbytes` if they are free and nobody waits before us; False otherwise."""
        if self._waiters or self.held + nbytes > self.limit:
            return False
        self._set(self.held + nbytes)
        return True

    async def take(self, nbytes: int, what: str, wait: float | None = None) -> None:
        """Take `nbytes`, waiting up to `wait` seconds (default: the budget's); BufferBudgetSpent if they do
        not come free in time, ResourceExhausted (not retryable) if they never can."""
        if nbytes > self.limit:
            raise ResourceExhausted(f"{what} needs {nbytes} bytes of buffer, more than three quarters of the "
                                    f"server's budget ({self.limit}: QUARRY_MAX_BUFFER_BYTES)",
                                    reason="BUFFER_BUDGET_TOO_SMALL",
                                    metadata={"needed_bytes": str(nbytes), "budget_bytes": str(self.limit)})
        if self.take_now(nbytes):
            return
        wait = self.wait_seconds if wait is None else wait
        if wait <= 0:
            raise self._spent(what, nbytes)
        waiter = asyncio.get_running_loop().create_future()
        entry = (nbytes, waiter)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), wait)
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                return  # granted just as the wait ended
            raise self._spent(what, nbytes) from None
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.give(nbytes)  # granted, but the taker is gone
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)
            if not waiter.done():
                waiter.cancel()
            self._wake()

    def give(self, nbytes: int) -> None:
        """Give back what `take` granted."""
        self._set(self.held - nbytes)
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            nbytes, waiter = self._waiters[0]
            if waiter.done():
                self._waiters.popleft()
                continue
            if self.held + nbytes > self.limit:
                return
            self._waiters.popleft()
            self._set(self.held + nbytes)
            waiter.set_result(None)

    def _spent(self, what: str, nbytes: int) -> BufferBudgetSpent:
        metrics.BUFFER_REFUSALS.inc()
        return BufferBudgetSpent(f"the server is busy: {what} needs {nbytes} bytes of buffer and "
                                 f"{self.held} of {self.limit} are held, and {self.queued} by streams waiting; try "
                                 "again", retry_after=1.0,
                                 metadata={"needed_bytes": str(nbytes), "held_bytes": str(self.held + self.queued),
                                           "budget_bytes": str(self.limit + self.queue_limit)})

    @contextlib.asynccontextmanager
    async def hold(self, nbytes: int, what: str) -> AsyncIterator[None]:
        """`take` for the duration of a block."""
        await self.take(nbytes, what)
        try:
            yield
        finally:
            self.give(nbytes)

    @contextlib.asynccontextmanager
    async def stream(self, window: int, rest: int, what: str) -> AsyncIterator[None]:
        """Hold a new stream's grant (`window` + `rest`), waiting for it if need be; while it waits, its window
        is held from the waiting streams' share (refused at once if that is spent)."""
        if self.queued + window > self.queue_limit:
            raise self._spent(what, window + rest)
        self.queued += window
        self._set(self.held)
        try:
            await self.take(window + rest, what)
        finally:
            self.queued -= window
            self._set(self.held)
        try:
            yield
        finally:
            self.give(window + rest)


class WriterBytes:
    """The part-writer bytes of one upload stream.

    One writer's worth comes with the stream's grant, so an admitted stream can always write. A second writer
    (the next part filling while the last one lands) is borrowed from the budget only if it is free at once;
    otherwise the stream lets its last part land and uses its own writer's bytes again. Nothing ever waits on
    the budget while holding part of it, so streams cannot hold each other up into a deadlock.
    """

    def __init__(self, budget: BufferBudget, size: int) -> None:
        self.budget = budget
        self.size = size
        self._own_free = True

    def take(self) -> bool | None:
        """Bytes for a writer without waiting: True (the stream's own), False (borrowed) or None (none free)."""
        if self._own_free:
            self._own_free = False
            return True
        return False if self.budget.take_now(self.size) else None

    def give(self, own: bool) -> None:
        """Give back what `take` returned."""
        if own:
            self._own_free = True
        else:
            self.budget.give(self.size)
