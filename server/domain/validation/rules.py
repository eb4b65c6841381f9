"""Dataset rules: size, format, rows, required columns, and schema compatibility with the current version."""

from __future__ import annotations

from collections.abc import Sequence

from server.model.datasets import TABULAR_FORMATS, DatasetRules
from server.model.report import ColumnInfo, Issue, Report

# The codes of the issues below: a file failing one broke a dataset rule (RuleViolation), not its format.
RULE_CODES = frozenset({"FILE_TOO_LARGE", "FORMAT_NOT_ALLOWED", "TOO_FEW_ROWS", "MISSING_COLUMN", "COLUMN_REMOVED",
                        "COLUMN_RETYPED"})


def check_before_reading(rules: DatasetRules, report: Report, size: int) -> None:
    """Rules that need only the size and the format."""
    if rules.max_file_bytes and size > rules.max_file_bytes:
        report.error(Issue("FILE_TOO_LARGE", f"the file has {size} bytes; the dataset allows at most "
                                             f"{rules.max_file_bytes}"))
    if rules.allowed_formats and report.format not in rules.allowed_formats:
        allowed = ", ".join(f.value for f in rules.allowed_formats)
        report.error(Issue("FORMAT_NOT_ALLOWED", f"the file is {report.format.value}; the dataset allows {allowed}"))


def check_after_reading(rules: DatasetRules, report: Report, previous: Sequence[ColumnInfo] | None) -> None:
    """Rules on the content: minimum rows, required columns, compatibility with the previous schema."""
    if report.format not in TABULAR_FORMATS or not report.ok:
        return
    if rules.min_rows and report.row_count < rules.min_rows:
        report.error(Issue("TOO_FEW_ROWS", f"the file has {report.row_count} rows; the dataset requires at least "
                                           f"{rules.min_rows}"))
    names = {c.name for c in report.columns}
    for required in rules.required_columns:
        if required not in names:
            report.error(Issue("MISSING_COLUMN", f"required column {required!r} is missing", column=required))
    if previous:
        check_compatible(previous, report.columns, report, rules.allow_breaking_schema_changes)


def check_compatible(previous: Sequence[ColumnInfo], current: Sequence[ColumnInfo], report: Report,
                     allow_breaking: bool) -> None:
    """Added columns pass; a removed or retyped column fails unless the dataset allows breaking changes."""
    now = {c.name: c for c in current}
    for column in previous:
        if column.name not in now:
            issue = Issue("COLUMN_REMOVED", f"column {column.name!r} ({column.type}) of the current version is "
                                            "missing", column=column.name)
        elif now[column.name].type != column.type and not _widening(column.type, now[column.name].type):
            issue = Issue("COLUMN_RETYPED", f"column {column.name!r} changed from {column.type} to "
                                            f"{now[column.name].type}", column=column.name)
        else:
            continue
        if allow_breaking:
            report.warn(issue)
        else:
            report.error(issue)


_WIDER = {"int8": 0, "int16": 1, "int32": 2, "int64": 3, "float": 4, "double": 5}


def _widening(old: str, new: str) -> bool:
    """int8 → int16 → … → double never loses a value, so it is not a breaking change."""
    return old in _WIDER and new in _WIDER and _WIDER[new] > _WIDER[old] and not (old == "int64" and new == "float")
