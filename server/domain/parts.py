"""Part arithmetic: the part size an upload gets, and whether its parts make a whole file."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from server.model.errors import FailedPrecondition, ResourceExhausted
from server.model.uploads import UploadPart

MiB = 1 << 20
MAX_PARTS = 10_000  # S3's limit, and ours on every store
_SIZE_STEPS = ((100_000_000, 16 * MiB), (1_000_000_000, 64 * MiB))
_LARGE = 128 * MiB


@dataclass(frozen=True)
class UploadLimits:
    """Limits every upload respects (from the settings)."""

    max_chunk_bytes: int
    min_part_bytes: int
    max_part_bytes: int
    max_upload_bytes: int
    max_open_uploads: int
    expiry_seconds: float


def choose_part_size(declared_size: int | None, limits: UploadLimits) -> int:
    """About 16 MiB under 100 MB, 64 MiB under 1 GB, 128 MiB above; never below the store's minimum, and
    large enough that the file fits in 10,000 parts."""
    size = _SIZE_STEPS[0][1]
    if declared_size is not None:
        size = next((part for limit, part in _SIZE_STEPS if declared_size < limit), _LARGE)
        needed = -(-declared_size // MAX_PARTS)
        size = max(size, -(-needed // MiB) * MiB)
    size = max(limits.min_part_bytes, min(size, limits.max_part_bytes))
    if declared_size is not None and -(-declared_size // size) > MAX_PARTS:
        raise ResourceExhausted(f"a file of {declared_size} bytes needs more than {MAX_PARTS} parts of "
                                f"{size} bytes (the largest part size)", reason="TOO_MANY_PARTS")
    return size


def assemble(parts: Sequence[UploadPart], part_size: int, declared_size: int | None) -> int:
    """Check the parts cover a whole file (1..n without a gap, all full but the last); return its size."""
    offset = 0
    for index, part in enumerate(parts, start=1):
        if part.number != index:
            raise FailedPrecondition(f"part {index} (offset {offset}) is missing", reason="INCOMPLETE_UPLOAD",
                                     metadata={"committed_bytes": str(offset), "missing_part": str(index)})
        last = index == len(parts)
        if part.size > part_size or (not last and part.size != part_size):
            raise FailedPrecondition(f"part {index} has {part.size} bytes; every part but the last must have "
                                     f"{part_size}", reason="INCOMPLETE_UPLOAD",
                                     metadata={"committed_bytes": str(offset)})
        offset += part.size
    if declared_size is not None and offset != declared_size:
        raise FailedPrecondition(f"upload has {offset} of its declared {declared_size} bytes",
                                 reason="SIZE_SHORT", metadata={"committed_bytes": str(offset),
                                                                "declared_size": str(declared_size)})
    return offset
