"""Where the object store is: an S3 bucket or a local directory (parsed from QUARRY_STORAGE_URL by settings)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class S3Location:
    """An S3 bucket (and key prefix) reached through `endpoint`, or AWS when endpoint is None."""

    bucket: str
    prefix: str
    endpoint: str | None
    region: str


@dataclass(frozen=True)
class LocalLocation:
    """A directory on local disk."""

    path: Path


StorageLocation = S3Location | LocalLocation
