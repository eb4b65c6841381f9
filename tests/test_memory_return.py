"""The server gives its heap back once its streams are done (server/memory.py).

Stream buffers come from the C heap, where freed space stays with the process; once the buffer budget has
nothing held for a moment, the heap is trimmed. The budget says when it becomes idle; the trimmer waits for
the budget to stay idle, then trims in a worker thread; and trimming gives back what the heap kept.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest
from quarry._allocator import TRIM_THRESHOLD_BYTES

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


def test_a_trim_gives_back_what_the_heap_kept() -> None:
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("malloc_trim is glibc's")
    # In a process of its own, so pytest's heap does not blur the figures.
    script = textwrap.dedent("""
        import asyncio, os, psutil
        from server.memory import HeapTrimmer, tune_heap

        def rss(): return psutil.Process().memory_info().rss >> 20

        async def main():
            assert tune_heap()  # as the server starts: 1 MiB blocks come from the heap, which keeps them once freed
            blocks = [os.urandom(1 << 20) for _ in range(300)]
            del blocks  # freed: glibc returns what lies above its trim threshold, and keeps the rest for reuse
            freed = rss()
            trimmer = HeapTrimmer(lambda: True, settle=0.01)
            trimmer()
            while trimmer.trims == 0:
                await asyncio.sleep(0.01)
            print(freed, rss())

        asyncio.run(main())
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    freed, trimmed = map(int, done.stdout.split())
    kept = TRIM_THRESHOLD_BYTES >> 20
    assert kept // 2 < freed - trimmed <= kept + 8, (freed, trimmed)  # what the heap kept is given back
