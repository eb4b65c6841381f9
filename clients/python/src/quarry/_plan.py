"""Which byte ranges of a file still have to be sent, cut for parallel streams.

The server writes whole parts of `part_size_bytes` (the last one shorter). A stream may start at the
upload's committed size or at the first byte of any part not yet written, and writes parts in order from
there; so the plan is the missing parts, grouped into runs of consecutive parts, with long runs cut so
that every stream gets about the same amount of work.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Range", "part_count", "plan_ranges"]


@dataclass(frozen=True)
class Range:
    """Bytes [start, stop) of the file: whole parts from part number `first_part`."""

    start: int
    stop: int
    first_part: int
    last: bool  # the range ends at the end of the file, so its stream sends the finish message

    @property
    def size(self) -> int:
        """Number of bytes in the range."""
        return self.stop - self.start


def part_count(size: int, part_size: int) -> int:
    """Number of parts of a file of `size` bytes (0 for an empty file)."""
    return -(-size // part_size)


def plan_ranges(size: int, part_size: int, committed: Iterable[int], streams: int) -> list[Range]:
    """The ranges still to send, in file order, for at most `streams` streams at a time."""
    if part_size <= 0:
        raise ValueError("part_size must be positive")
    total = part_count(size, part_size)
    done = set(committed)
    if total == 0:
        return [] if done else [Range(0, 0, 1, True)]  # an empty file: one stream that only finishes
    missing = [number for number in range(1, total + 1) if number not in done]
    if not missing:
        return []
    longest = -(-len(missing) // max(1, streams))
    runs: list[list[int]] = []
    for number in missing:
        if runs and runs[-1][-1] == number - 1 and len(runs[-1]) < longest:
            runs[-1].append(number)
        else:
            runs.append([number])
    return [Range((run[0] - 1) * part_size, min(run[-1] * part_size, size), run[0], run[-1] == total)
            for run in runs]
