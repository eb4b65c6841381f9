"""Versions and their files."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from server.model.datasets import DatasetRules, FileFormat
from server.model.failures import Failure
from server.model.names import version_name
from server.model.objects import INLINE_PREFIX
from server.model.registration import EXTERNAL_PREFIX, Registration
from server.model.report import ColumnInfo, ColumnStats, Issue


class VersionState(StrEnum):
    """Lifecycle of a version."""

    PENDING = "PENDING"
    VALIDATING = "VALIDATING"
    PROMOTING = "PROMOTING"
    READY = "READY"
    FAILED = "FAILED"


class VersionView(StrEnum):
    """How much of a version's files a read returns (AIP-157): BASIC leaves out their columns and reports
    (and GetVersion leaves out the file list); FULL includes them."""

    BASIC = "BASIC"
    FULL = "FULL"


VERSION_FINAL_STATES = frozenset({VersionState.READY, VersionState.FAILED})
VERSION_WORKING_STATES = frozenset({VersionState.PENDING, VersionState.VALIDATING, VersionState.PROMOTING})


@dataclass(frozen=True)
class FileReport:
    """The stored validation report of a file."""

    format: FileFormat
    detected_by: str
    row_count: int
    row_groups: int
    bytes_read: int
    warnings: tuple[Issue, ...] = ()
    errors: tuple[Issue, ...] = ()

    @classmethod
    def from_json(cls, value: dict[str, Any] | None, fallback: FileFormat = FileFormat.BINARY) -> FileReport:
        """Read the jsonb form written by `Report.to_json`."""
        value = value or {}
        return cls(
            format=FileFormat(value.get("format", fallback.value)),
            detected_by=value.get("detected_by", ""),
            row_count=int(value.get("row_count", 0)),
            row_groups=int(value.get("row_groups", 0)),
            bytes_read=int(value.get("bytes_read", 0)),
            warnings=tuple(Issue.from_json(w) for w in value.get("warnings", [])),
            errors=tuple(Issue.from_json(e) for e in value.get("errors", [])),
        )


@dataclass(frozen=True)
class Rendition:
    """The Parquet rendition of a CSV or JSON Lines file (the rule normalize_to_parquet): where it is, its size and
    sha256."""

    key: str
    size: int
    sha256: str


@dataclass(frozen=True)
class VersionFile:
    """One file of a version."""

    path: str
    object_key: str
    size: int
    sha256: str
    format: FileFormat
    content_type: str
    columns: tuple[ColumnInfo, ...]
    row_count: int
    report: FileReport
    stats: tuple[ColumnStats, ...]
    arrow_schema: bytes | None
    upload_id: uuid.UUID | None = None
    rendition: Rendition | None = None

    def rendered(self) -> VersionFile:
        """The file as its Parquet rendition reads (same path, columns and rows), or itself when it has none."""
        if self.rendition is None:
            return self
        return dataclasses.replace(self, object_key=self.rendition.key, size=self.rendition.size,
                                   sha256=self.rendition.sha256, format=FileFormat.PARQUET, rendition=None,
                                   report=dataclasses.replace(self.report, format=FileFormat.PARQUET, row_groups=0))

    @property
    def inline(self) -> bool:
        """Whether the bytes are kept in Postgres (WriteFile) rather than the object store."""
        return self.object_key.startswith(INLINE_PREFIX)

    @property
    def external(self) -> bool:
        """Whether the bytes are a registered object outside the store (RegisterFiles without copy)."""
        return self.object_key.startswith(EXTERNAL_PREFIX)

    def approx_bytes(self, full: bool) -> int:
        """About how many bytes the file takes in an answer: a little more than its protobuf encoding, so that a
        sum of these bounds a message's size."""
        size = 96 + len(self.path.encode()) + len(self.content_type)
        if full:
            size += sum(16 + len(c.name.encode()) + len(c.type) for c in self.columns) + len(self.arrow_schema or b"")
            size += sum(32 + len(i.message.encode()) + len(i.column.encode()) + len(i.code)
                        for i in (*self.report.warnings, *self.report.errors))
        return size


@dataclass(frozen=True)
class Version:
    """An immutable snapshot of a dataset's files (once READY)."""

    id: uuid.UUID
    dataset_id: uuid.UUID
    namespace: str
    dataset: str
    number: int | None
    base_id: uuid.UUID | None
    parent_id: uuid.UUID | None
    message: str
    state: VersionState
    failure: Failure | None
    author: str
    delete_paths: tuple[str, ...]
    file_count: int
    total_bytes: int
    total_rows: int
    create_time: datetime
    ready_time: datetime | None
    files: tuple[VersionFile, ...] = field(default=())
    cloned_from: str = ""
    registration: Registration | None = None

    @property
    def name(self) -> str:
        """Canonical resource name (by uid: the same before and after the version is READY)."""
        return version_name(self.namespace, self.dataset, self.id)

    @property
    def dataset_name(self) -> str:
        """Resource name of the dataset."""
        return f"namespaces/{self.namespace}/datasets/{self.dataset}"

    @property
    def parent_name(self) -> str:
        """Resource name of the parent version, or empty."""
        if self.parent_id is None:
            return ""
        return version_name(self.namespace, self.dataset, self.parent_id)


@dataclass(frozen=True)
class DatasetHead:
    """What commits and promotion need of a dataset: its id, current version and rules."""

    id: uuid.UUID
    namespace: str
    namespace_id: uuid.UUID
    name: str
    state: str
    current_version_id: uuid.UUID | None
    current_number: int | None
    rules: DatasetRules
