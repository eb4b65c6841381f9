"""The SDK's range writer on this machine's file system: ranges land in order and whole, past the page cache
when the file system allows it, through it otherwise; after a failed write nothing later is written."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from quarry import _range_writer
from quarry._range_writer import BLOCK, RangeWriter

RANGE = 64 << 10


def chunks_of(data: bytes, size: int = 10_000) -> list[bytes]:
    """`data` in pieces that line up with no block boundary (as ReadFile messages need not)."""
    return [data[i:i + size] for i in range(0, len(data), size)]


def write_ranges(path: Path, data: bytes, start: int) -> bool:
    """Write data[start:] as the download does: a first range up to a RANGE boundary, then whole ranges.
    Returns whether the writer went past the page cache."""
    with open(path, "r+b" if path.exists() else "w+b", buffering=0) as plain:
        plain.truncate(start)
        writer = RangeWriter(path, plain.fileno(), RANGE)
        try:
            bounds = [start, *range((start // RANGE + 1) * RANGE, len(data), RANGE), len(data)]
            for begin, end in zip(bounds, bounds[1:], strict=False):
                writer.write(begin, chunks_of(data[begin:end]))
            writer.drain()
            return writer.direct
        finally:
            writer.close()


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "page cache"])
@pytest.mark.parametrize("start", [0, 1, BLOCK - 1, RANGE, RANGE + 5000], ids=lambda s: f"from {s}")
def test_ranges_land_whole_and_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, direct: bool,
                                        start: int) -> None:
    if not direct:
        monkeypatch.setattr(_range_writer, "DIRECT", 0)
    data = os.urandom(5 * RANGE + 777)  # ends off a block boundary: the last bytes go the ordinary way
    path = tmp_path / "file.partial"
    path.write_bytes(data[:start])  # what an earlier, interrupted download left
    went_direct = write_ranges(path, data, start)
    assert path.read_bytes() == data
    if direct and not went_direct:
        pytest.skip("this file system refuses O_DIRECT: only the page-cache way was checked")
    assert went_direct == direct


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "page cache"])
def test_after_a_failed_write_nothing_later_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       direct: bool) -> None:
    # One write fails (an I/O error on the second range) while the later ranges could still be written: they
    # must not be, or the partial file would have a hole that a later download took for data. (The real
    # short write of a full file system is in tests/test_sdk_reads.py.)
    if not direct:
        monkeypatch.setattr(_range_writer, "DIRECT", 0)
    real = _range_writer._write_all

    def failing(fd: int, data: memoryview, offset: int) -> None:
        if RANGE <= offset < 2 * RANGE:
            raise OSError(errno.EIO, "Input/output error")
        real(fd, data, offset)

    monkeypatch.setattr(_range_writer, "_write_all", failing)
    data = os.urandom(4 * RANGE)
    path = tmp_path / "file.partial"
    with open(path, "w+b", buffering=0) as plain:
        writer = RangeWriter(path, plain.fileno(), RANGE)
        try:
            with pytest.raises(OSError) as failed:
                for begin in range(0, len(data), RANGE):
                    writer.write(begin, [data[begin:begin + RANGE]])
                writer.drain()
        finally:
            writer.close()
    assert failed.value.errno == errno.EIO
    assert path.read_bytes() == data[:RANGE]  # the first range, and nothing after the failed one
