"""The server gives its heap back once its streams are done (server/memory.py).

Stream buffers come from the C heap, where freed space stays with the process; once the buffer budget has
nothing held for a moment, the heap is trimmed. The budget says when it becomes idle; the trimmer waits for
the budget to stay idle, then trims in a worker thread; and trimming does return a fragmented heap's pages.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest

from server.domain.budget import BufferBudget
from server.memory import HeapTrimmer
from server.model.errors import BufferBudgetSpent
from tests.support import eventually


async def test_the_budget_says_when_its_last_bytes_are_given_back() -> None:
    idle: list[int] = []
    budget = BufferBudget(400, wait_seconds=0.05, on_idle=lambda: idle.append(budget.held))
    async with budget.stream(10, 90, "a"):
        async with budget.stream(10, 40, "b"):
            assert budget.held == 150 and not budget.idle
        assert idle == [] and budget.held == 100
    assert idle == [0] and budget.idle
    await budget.take(300, "c")
    with pytest.raises(BufferBudgetSpent):  # refused after its wait: its window was queued, then given back
        async with budget.stream(10, 90, "d"):
            pass
    assert idle == [0]  # c still holds its bytes
    budget.give(300)
    assert idle == [0, 0]


async def test_the_trimmer_waits_for_the_budget_to_stay_idle() -> None:
    idle = True
    trimmer = HeapTrimmer(lambda: idle, settle=0.05)

    async def settled() -> bool:
        return not trimmer.pending

    trimmer()
    trimmer()  # told twice: one trim
    await eventually(settled, "the trim")
    assert trimmer.trims == 1
    trimmer()
    idle = False  # a stream started before the moment passed: no trim
    await eventually(settled, "the moment to pass")
    assert trimmer.trims == 1
    idle = True
    trimmer()
    assert trimmer.pending
    trimmer.close()  # the server stops: the pending trim is dropped
    assert not trimmer.pending and trimmer.trims == 1


def test_a_trim_gives_a_fragmented_heap_back() -> None:
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("malloc_trim is glibc's")
    # In a process of its own, so pytest's heap does not blur the figures.
    script = textwrap.dedent("""
        import asyncio, os, psutil
        from server.memory import HeapTrimmer

        def rss(): return psutil.Process().memory_info().rss >> 20

        async def main():
            warm = [os.urandom(1 << 20) for _ in range(8)]
            del warm  # freed, these raise glibc's mmap threshold past 1 MiB: the next blocks come from the heap
            blocks = [os.urandom(1 << 20) for _ in range(300)]
            pins = [bytes(10) * (i + 1) for i in range(300)]  # small blocks after them: the heap cannot shrink
            del blocks
            freed = rss()
            trimmer = HeapTrimmer(lambda: True, settle=0.01)
            trimmer()
            async with asyncio.timeout(10):  # the trim, as its done-callback counts it
                while trimmer.trims == 0:
                    await asyncio.sleep(0.01)
            print(freed, rss(), len(pins))

        asyncio.run(main())
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    freed, trimmed, _ = map(int, done.stdout.split())
    assert freed > 250 and freed - trimmed > 200, (freed, trimmed)
