"""Sizes on benchmark command lines: `1GiB`, `512MiB`, `20MB`, `4096`."""

from __future__ import annotations

MiB = 1 << 20
GiB = 1 << 30


def parse_size(text: str) -> int:
    """Bytes of a size such as 1GiB, 512MiB, 20MB or 4096."""
    units = {"KIB": 1 << 10, "MIB": MiB, "GIB": GiB, "KB": 1000, "MB": 10**6, "GB": 10**9, "B": 1}
    upper = text.upper()
    for unit, factor in units.items():
        if upper.endswith(unit):
            return int(float(upper[: -len(unit)]) * factor)
    return int(text)
