"""Domain models: plain frozen dataclasses that repositories build and use cases return."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from server.domain.errors import QuarryError
from server.domain.names import upload_name


class FileFormat(StrEnum):
    """The format validation detected."""

    CSV = "CSV"
    JSONL = "JSONL"
    PARQUET = "PARQUET"
    TEXT = "TEXT"
    BINARY = "BINARY"


TABULAR_FORMATS = frozenset({FileFormat.CSV, FileFormat.JSONL, FileFormat.PARQUET})


class DatasetState(StrEnum):
    """Lifecycle of a dataset."""

    DRAFT = "DRAFT"
    ACTIVE = "ACTIVE"
    DELETED = "DELETED"


@dataclass(frozen=True)
class DatasetRules:
    """What every file of a new version must satisfy (stored on the dataset as jsonb)."""

    max_file_bytes: int = 0
    allowed_formats: tuple[FileFormat, ...] = ()
    min_rows: int = 0
    required_columns: tuple[str, ...] = ()
    allow_breaking_schema_changes: bool = False

    def to_json(self) -> dict[str, Any]:
        """The jsonb form."""
        return {"max_file_bytes": self.max_file_bytes, "allowed_formats": [f.value for f in self.allowed_formats],
                "min_rows": self.min_rows, "required_columns": list(self.required_columns),
                "allow_breaking_schema_changes": self.allow_breaking_schema_changes}

    @classmethod
    def from_json(cls, value: dict[str, Any] | None) -> DatasetRules:
        """Read the jsonb form (missing keys take their defaults)."""
        value = value or {}
        return cls(
            max_file_bytes=int(value.get("max_file_bytes", 0)),
            allowed_formats=tuple(FileFormat(f) for f in value.get("allowed_formats", [])),
            min_rows=int(value.get("min_rows", 0)),
            required_columns=tuple(value.get("required_columns", [])),
            allow_breaking_schema_changes=bool(value.get("allow_breaking_schema_changes", False)),
        )


@dataclass(frozen=True)
class Dataset:
    """A named, versioned collection of files in a namespace."""

    id: uuid.UUID
    namespace: str
    namespace_id: uuid.UUID
    name: str
    description: str
    labels: dict[str, str]
    rules: DatasetRules
    state: DatasetState
    current_version_id: uuid.UUID | None
    current_version_number: int | None
    revision: int
    create_time: datetime
    update_time: datetime
    delete_time: datetime | None

    @property
    def resource_name(self) -> str:
        """`namespaces/{ns}/datasets/{name}`."""
        return f"namespaces/{self.namespace}/datasets/{self.name}"

    @property
    def etag(self) -> str:
        """Opaque; changes with every update."""
        return hashlib.sha256(f"{self.id}:{self.revision}".encode()).hexdigest()[:16]


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
class Failure:
    """Why an upload or version failed: the error kind (a class name in domain.errors) and its details."""

    kind: str
    reason: str
    message: str
    path: str = ""
    retryable: bool = False

    @classmethod
    def of(cls, error: QuarryError, path: str = "") -> Failure:
        """The failure a domain error describes."""
        return cls(type(error).__name__, error.reason, error.message, path, error.retryable)

    def to_json(self) -> dict[str, Any]:
        """The jsonb form stored in Postgres."""
        return {"kind": self.kind, "reason": self.reason, "message": self.message, "path": self.path,
                "retryable": self.retryable}

    @classmethod
    def from_json(cls, value: dict[str, Any] | None) -> Failure | None:
        """Read the jsonb form."""
        if not value:
            return None
        return cls(value["kind"], value["reason"], value["message"], value.get("path", ""),
                   bool(value.get("retryable", False)))


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
