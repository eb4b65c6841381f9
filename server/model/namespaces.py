"""Namespaces: created by an operator, each with the quotas an operator set on it."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime

QUOTA_FIELDS = ("max_bytes", "max_open_uploads", "max_datasets", "requests_per_second")


@dataclass(frozen=True)
class Quota:
    """Limits of one namespace; 0 means none of its own (max_open_uploads then falls back to the server's
    QUARRY_MAX_OPEN_UPLOADS, the others are unlimited)."""

    max_bytes: int = 0
    max_open_uploads: int = 0
    max_datasets: int = 0
    requests_per_second: float = 0.0


@dataclass(frozen=True)
class Usage:
    """What a namespace holds now: stored bytes (fresh objects plus staged parts), open uploads, live datasets."""

    stored_bytes: int = 0
    open_uploads: int = 0
    datasets: int = 0


@dataclass(frozen=True)
class Namespace:
    """A namespace row."""

    id: uuid.UUID
    name: str
    quota: Quota
    revision: int
    create_time: datetime
    update_time: datetime

    @property
    def resource_name(self) -> str:
        """`namespaces/{name}`."""
        return f"namespaces/{self.name}"

    @property
    def etag(self) -> str:
        """Changes whenever the namespace does."""
        return hashlib.sha256(f"{self.id}:{self.revision}".encode()).hexdigest()[:16]
