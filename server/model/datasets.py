"""Datasets: their rules, states and the formats validation detects."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


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
    normalize_to_parquet: bool = False

    def to_json(self) -> dict[str, Any]:
        """The jsonb form."""
        return {"max_file_bytes": self.max_file_bytes, "allowed_formats": [f.value for f in self.allowed_formats],
                "min_rows": self.min_rows, "required_columns": list(self.required_columns),
                "allow_breaking_schema_changes": self.allow_breaking_schema_changes,
                "normalize_to_parquet": self.normalize_to_parquet}

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
            normalize_to_parquet=bool(value.get("normalize_to_parquet", False)),
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
