"""CRC32C (Castagnoli) of pieces, combined without reading the bytes twice.

`combine(crc_a, crc_b, len_b)` is the CRC of `a + b` from the CRCs of `a` and `b` (zlib's
crc32_combine, over GF(2)): the CRC of `a` moved past `len_b` zero bytes, XOR the CRC of `b`. The operator
for each power-of-two length is precomputed once, the one for a whole length when first used (uploads send
chunks of a few sizes, so each costs one matrix-vector product after the first). The upload stream checks
each chunk's CRC once and combines the chunk CRCs into the part's.

`crc_between` is the CRC of bytes inside a larger buffer from the CRCs of the buffer and of what surrounds
them: how the server gets the CRC of a chunk's data from its whole message without copying the data out.

The server needs google-crc32c's C build: the pure-Python fallback takes seconds per MiB, on the event
loop, so importing this module without it fails and the server refuses to start.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import google_crc32c

if getattr(google_crc32c, "implementation", "") != "c":
    raise ImportError("google-crc32c is the pure-Python build, too slow to check uploads on the event loop; "
                      "install a google-crc32c wheel with its C extension for this platform "
                      "(pip install --force-reinstall --only-binary=:all: google-crc32c)")

_POLY = 0x82F63B78  # CRC32C, reflected


def _times(matrix: Sequence[int], vector: int) -> int:
    result = 0
    index = 0
    while vector:
        if vector & 1:
            result ^= matrix[index]
        vector >>= 1
        index += 1
    return result


def _square(matrix: list[int]) -> list[int]:
    return [_times(matrix, row) for row in matrix]


def _zero_byte_operators(count: int) -> list[list[int]]:
    one_bit = [_POLY] + [1 << n for n in range(31)]  # the operator that appends one zero bit
    operator = _square(_square(_square(one_bit)))  # eight zero bits: one zero byte
    operators = [operator]
    for _ in range(count - 1):
        operators.append(_square(operators[-1]))
    return operators


_OPERATORS = _zero_byte_operators(64)  # operators for 2**k zero bytes


@functools.lru_cache(maxsize=256)
def _operator(length: int) -> tuple[int, ...]:
    """The operator that moves a CRC past `length` zero bytes: the product of those of its powers of two."""
    operator: tuple[int, ...] | None = None
    k = 0
    while length:
        if length & 1:
            power = _OPERATORS[k]
            operator = tuple(power) if operator is None else tuple(_times(power, column) for column in operator)
        length >>= 1
        k += 1
    return operator if operator is not None else tuple(1 << n for n in range(32))


def combine(crc_a: int, crc_b: int, length_b: int) -> int:
    """CRC32C of the concatenation a + b, given crc(a), crc(b) and len(b)."""
    return _times(_operator(length_b), crc_a) ^ crc_b if length_b else crc_a ^ crc_b


def crc_between(whole: int, head: int, tail: int, tail_length: int, middle_length: int, claimed: int) -> bool:
    """Whether the bytes between a head and a tail have the CRC32C `claimed`, given the CRCs of the whole
    (head + middle + tail), of the head and of the tail: the whole's CRC is then the combination of the three."""
    return combine(combine(head, claimed, middle_length), tail, tail_length) == whole


def crc_after(whole: int, head: int, middle_length: int) -> int:
    """CRC32C of the bytes that follow a head to the end of a buffer (`middle_length` of them), given the CRCs
    of the whole buffer and of the head."""
    return whole ^ _times(_operator(middle_length), head)


def crc32c(data: bytes | memoryview) -> int:
    """CRC32C of some bytes (a memoryview is copied: the C implementation takes only bytes)."""
    return int(google_crc32c.value(data if isinstance(data, bytes) else bytes(data)))
