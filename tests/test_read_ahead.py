"""ReadFile reads one message ahead (server/domain/files.py `_one_ahead`): the next piece is read from the store
while the current one is sent, never more than one, and a read the client leaves is stopped and closed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from server.domain.files import _one_ahead
from tests.support import eventually


class Source:
    """Pieces as a store yields them, recording how far it was read and whether it was closed."""

    def __init__(self, count: int, stall_at: int | None = None) -> None:
        self.count = count
        self.stall_at = stall_at
        self.started = 0  # pieces whose read began
        self.closed = False
        self.cancelled = False

    async def pieces(self) -> AsyncIterator[tuple[int, bytes]]:
        try:
            for number in range(self.count):
                self.started = number + 1
                if number == self.stall_at:
                    await asyncio.Event().wait()  # a read that does not end (a slow disk or S3)
                await asyncio.sleep(0)
                yield number, bytes([number])
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        finally:
            self.closed = True


async def test_pieces_come_in_order_with_the_next_one_read_meanwhile() -> None:
    source = Source(5)
    seen = []
    async for offset, data in _one_ahead(source.pieces()):
        # While the caller holds a piece (gRPC sends it), the next one is read...
        async def next_read(ahead: int = min(offset + 2, 5)) -> bool:
            return source.started == ahead

        await eventually(next_read, f"the read of piece {offset + 1}", timeout=5)
        for _ in range(20):  # ...and no further, however long the caller takes
            await asyncio.sleep(0)
        assert source.started == min(offset + 2, 5)
        seen.append((offset, data))
    assert seen == [(n, bytes([n])) for n in range(5)] and source.closed


async def test_a_caller_that_stops_stops_the_read_in_flight_and_closes_the_source() -> None:
    source = Source(10, stall_at=2)
    reader = _one_ahead(source.pieces())
    assert (await anext(reader))[0] == 0
    assert (await anext(reader))[0] == 1

    async def stalled() -> bool:
        return source.started == 3

    await eventually(stalled, "the read of the third piece")
    async with asyncio.timeout(10):  # not left waiting for a read that does not end
        await reader.aclose()  # the client went away while the third piece was being read
    assert source.cancelled and source.closed


async def test_a_failing_store_fails_the_read() -> None:
    async def failing() -> AsyncIterator[tuple[int, bytes]]:
        yield 0, b"a"
        raise OSError("disk gone")

    reader = _one_ahead(failing())
    assert await anext(reader) == (0, b"a")
    with pytest.raises(OSError, match="disk gone"):
        await anext(reader)
