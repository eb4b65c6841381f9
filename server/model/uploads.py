"""Uploads: the session, its parts, its states."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from server.model.failures import Failure
from server.model.names import upload_name


class UploadState(StrEnum):
    """Lifecycle of an upload (see DESIGN.md, "The upload path")."""

    OPEN = "OPEN"
    STAGED = "STAGED"
    VALIDATING = "VALIDATING"
    VALIDATED = "VALIDATED"
    PROMOTED = "PROMOTED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"


# States after which nothing more happens to an upload (FAILED too, unless someone retries it).
UPLOAD_FINAL_STATES = frozenset({UploadState.PROMOTED, UploadState.FAILED, UploadState.CANCELLED,
                                 UploadState.EXPIRED})
# States in which an upload still owns bytes in staging that cancelling must delete.
UPLOAD_CANCELLABLE_STATES = frozenset({UploadState.OPEN, UploadState.STAGED, UploadState.VALIDATING,
                                       UploadState.VALIDATED, UploadState.FAILED})


@dataclass(frozen=True)
class UploadPart:
    """A part durably written to the store and recorded."""

    number: int
    offset: int
    size: int
    etag: str
    crc32c: int


@dataclass(frozen=True)
class Upload:
    """An upload session and what it has received."""

    id: uuid.UUID
    namespace: str
    namespace_id: uuid.UUID
    dataset: str
    dataset_id: uuid.UUID
    path: str
    declared_size: int | None
    declared_sha256: str | None
    content_type: str
    auto_commit: bool
    commit_message: str
    state: UploadState
    part_size: int
    staging_key: str
    store_upload_id: str | None
    size: int | None
    sha256: str | None
    failure: Failure | None
    version_id: uuid.UUID | None
    version_name: str | None
    expire_time: datetime
    create_time: datetime
    update_time: datetime
    parts: tuple[UploadPart, ...] = field(default=())

    @property
    def name(self) -> str:
        """Resource name."""
        return upload_name(self.namespace, self.id)

    @property
    def committed_bytes(self) -> int:
        """Bytes written from offset 0 without a gap: where a single stream resumes."""
        if self.state not in (UploadState.OPEN,) and self.size is not None:
            return self.size
        expected_offset = 0
        for part in self.parts:  # ordered by number
            if part.offset != expected_offset:
                break
            expected_offset += part.size
        return expected_offset

    def part(self, number: int) -> UploadPart | None:
        """The committed part with this number, if any."""
        for part in self.parts:
            if part.number == number:
                return part
        return None
