"""CRC32C (Castagnoli) of pieces, combined without reading the bytes twice.

`combine(crc_a, crc_b, len_b)` is the CRC of `a + b` from the CRCs of `a` and `b` (zlib's
crc32_combine, over GF(2), with the operator for each power-of-two length precomputed once). The
upload stream checks each chunk's CRC once and combines the chunk CRCs into the part's.

The server needs google-crc32c's C build: the pure-Python fallback takes seconds per MiB, on the event
loop, so importing this module without it fails and the server refuses to start.
"""

from __future__ import annotations

import google_crc32c

if getattr(google_crc32c, "implementation", "") != "c":
    raise ImportError("google-crc32c is the pure-Python build, too slow to check uploads on the event loop; "
                      "install a google-crc32c wheel with its C extension for this platform "
                      "(pip install --force-reinstall --only-binary=:all: google-crc32c)")

_POLY = 0x82F63B78  # CRC32C, reflected


def _times(matrix: list[int], vector: int) -> int:
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


def combine(crc_a: int, crc_b: int, length_b: int) -> int:
    """CRC32C of the concatenation a + b, given crc(a), crc(b) and len(b)."""
    k = 0
    while length_b:
        if length_b & 1:
            crc_a = _times(_OPERATORS[k], crc_a)
        length_b >>= 1
        k += 1
    return crc_a ^ crc_b


def crc32c(data: bytes | memoryview) -> int:
    """CRC32C of some bytes (a memoryview is copied: the C implementation takes only bytes)."""
    return int(google_crc32c.value(data if isinstance(data, bytes) else bytes(data)))
