"""What validation finds: columns, statistics, issues and the report stored with a file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from server.model.datasets import FileFormat

if TYPE_CHECKING:
    import pyarrow as pa

MAX_ISSUES = 20


@dataclass(frozen=True)
class Issue:
    """One problem in a file; `line` is 1-based (0 when not about a line)."""

    code: str
    message: str
    line: int = 0
    column: str = ""

    def to_json(self) -> dict[str, Any]:
        """The jsonb form."""
        return {"code": self.code, "message": self.message, "line": self.line, "column": self.column}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Issue:
        """Read the jsonb form."""
        return cls(value["code"], value["message"], int(value.get("line", 0)), value.get("column", ""))


@dataclass(frozen=True)
class ColumnInfo:
    """A column of a tabular file: name, Arrow type as text, nullability."""

    name: str
    type: str
    nullable: bool = True

    def to_json(self) -> dict[str, Any]:
        """The jsonb form."""
        return {"name": self.name, "type": self.type, "nullable": self.nullable}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> ColumnInfo:
        """Read the jsonb form."""
        return cls(value["name"], value["type"], bool(value.get("nullable", True)))


@dataclass(frozen=True)
class HistogramBucket:
    """Values in [lower, upper) (the last bucket of a histogram includes upper)."""

    lower: float
    upper: float
    count: int


@dataclass(frozen=True)
class ColumnStats:
    """Per-column statistics computed in the validation pass: nulls, min, max (as text), a distinct count, and for
    numeric columns mean, standard deviation, quantiles and a histogram; the top values of a low-cardinality
    column. Optional parts are empty (None, ()) where they do not apply or were not computed."""

    name: str
    type: str
    null_count: int
    min: str
    max: str
    distinct_estimate: int
    source: str
    count: int = 0
    mean: float | None = None
    stddev: float | None = None
    quantiles: tuple[tuple[float, float], ...] = ()
    top_values: tuple[tuple[str, int], ...] = ()
    histogram: tuple[HistogramBucket, ...] = ()
    distinct_exact: bool = False

    def to_json(self) -> dict[str, Any]:
        """The jsonb form (finite numbers only: jsonb has no NaN)."""
        return {"name": self.name, "type": self.type, "null_count": self.null_count, "min": self.min,
                "max": self.max, "distinct_estimate": self.distinct_estimate, "source": self.source,
                "count": self.count, "mean": self.mean, "stddev": self.stddev,
                "quantiles": [list(q) for q in self.quantiles], "top_values": [list(t) for t in self.top_values],
                "histogram": [[b.lower, b.upper, b.count] for b in self.histogram],
                "distinct_exact": self.distinct_exact}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> ColumnStats:
        """Read the jsonb form (statistics stored before the full set have only the first seven)."""
        return cls(value["name"], value["type"], int(value["null_count"]), value["min"], value["max"],
                   int(value["distinct_estimate"]), value["source"], count=int(value.get("count", 0)),
                   mean=value.get("mean"), stddev=value.get("stddev"),
                   quantiles=tuple((float(p), float(v)) for p, v in value.get("quantiles", [])),
                   top_values=tuple((str(v), int(c)) for v, c in value.get("top_values", [])),
                   histogram=tuple(HistogramBucket(float(lo), float(hi), int(c))
                                   for lo, hi, c in value.get("histogram", [])),
                   distinct_exact=bool(value.get("distinct_exact", False)))


@dataclass
class Report:
    """The validation report of one file, built up as the file streams by."""

    format: FileFormat = FileFormat.BINARY
    detected_by: str = ""
    row_count: int = 0
    row_groups: int = 0
    bytes_read: int = 0
    sha256: str = ""
    columns: list[ColumnInfo] = field(default_factory=list)
    arrow_schema: bytes | None = None
    stats: list[ColumnStats] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    errors: list[Issue] = field(default_factory=list)
    error_count: int = 0

    def set_schema(self, schema: pa.Schema) -> None:
        """Record the columns and the serialized Arrow schema of a tabular file."""
        self.columns = [ColumnInfo(f.name, str(f.type), f.nullable) for f in schema]
        self.arrow_schema = schema.serialize().to_pybytes()

    def error(self, issue: Issue) -> None:
        """Record an error (only the first few are kept; all are counted)."""
        self.error_count += 1
        if len(self.errors) < MAX_ISSUES:
            self.errors.append(issue)

    def warn(self, issue: Issue) -> None:
        """Record a warning (only the first few are kept)."""
        if len(self.warnings) < MAX_ISSUES:
            self.warnings.append(issue)

    @property
    def ok(self) -> bool:
        """Whether the file passed."""
        return self.error_count == 0

    def to_json(self) -> dict[str, Any]:
        """The jsonb form stored with the upload and its version file."""
        return {"format": self.format.value, "detected_by": self.detected_by, "row_count": self.row_count,
                "row_groups": self.row_groups, "bytes_read": self.bytes_read,
                "warnings": [w.to_json() for w in self.warnings], "errors": [e.to_json() for e in self.errors],
                "error_count": self.error_count}


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (pyarrow's run on), or its class name when it has none."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
