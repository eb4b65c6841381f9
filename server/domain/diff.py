"""How two versions of a dataset differ: paths added, removed and changed, and the schema changes of tables.

Content decides: a path whose file has the same SHA-256 (hence the same content key) in both versions is
unchanged, whatever else was recorded about it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from server.model.datasets import TABULAR_FORMATS
from server.model.report import ColumnInfo
from server.model.versions import Version, VersionFile


class ChangeKind(StrEnum):
    """How a path changed."""

    ADDED = "ADDED"
    REMOVED = "REMOVED"
    MODIFIED = "MODIFIED"


@dataclass(frozen=True)
class ColumnTypeChange:
    """A column in both files whose Arrow type differs."""

    name: str
    base_type: str
    target_type: str


@dataclass(frozen=True)
class SchemaChange:
    """Column differences of a tabular file present in both versions, and its row counts."""

    added: tuple[ColumnInfo, ...]
    removed: tuple[ColumnInfo, ...]
    retyped: tuple[ColumnTypeChange, ...]
    base_row_count: int
    target_row_count: int


@dataclass(frozen=True)
class FileChange:
    """One path that differs; `base` is None when ADDED, `target` None when REMOVED."""

    path: str
    kind: ChangeKind
    base: VersionFile | None
    target: VersionFile | None
    schema_change: SchemaChange | None = None


@dataclass(frozen=True)
class VersionDiff:
    """The differences between two versions (a page of them, by path), how many paths are identical in all, and the
    token of the next page ("" after the last)."""

    base: Version
    target: Version
    changes: tuple[FileChange, ...]
    unchanged_count: int
    next_token: str = ""


def change_of(path: str, old: VersionFile | None, new: VersionFile | None) -> FileChange | None:
    """How `path` changed from file `old` to file `new` (None where a version lacks it); None when identical (or
    absent from both)."""
    if old is None and new is None:
        return None
    if old is None:
        return FileChange(path, ChangeKind.ADDED, None, new)
    if new is None:
        return FileChange(path, ChangeKind.REMOVED, old, None)
    if old.sha256 == new.sha256 and old.object_key == new.object_key:
        return None
    return FileChange(path, ChangeKind.MODIFIED, old, new, schema_change(old, new))


def schema_change(base: VersionFile, target: VersionFile) -> SchemaChange | None:
    """Columns added, removed and retyped between two tabular files (None unless both are tabular)."""
    if base.format not in TABULAR_FORMATS or target.format not in TABULAR_FORMATS:
        return None
    old, new = _by_name(base.columns), _by_name(target.columns)
    added = tuple(c for c in target.columns if c.name not in old)
    removed = tuple(c for c in base.columns if c.name not in new)
    retyped = tuple(ColumnTypeChange(c.name, old[c.name].type, c.type) for c in new.values()
                    if c.name in old and old[c.name].type != c.type)
    return SchemaChange(added, removed, retyped, base.row_count, target.row_count)


def _by_name(columns: Sequence[ColumnInfo]) -> dict[str, ColumnInfo]:
    """Columns by name, in order; the first of duplicate names wins."""
    named: dict[str, ColumnInfo] = {}
    for column in columns:
        named.setdefault(column.name, column)
    return named
