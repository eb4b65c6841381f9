"""Parquet: the footer (schema, row groups, column statistics), then every page decoded, batch by batch.

Needs random access, so it reads a local file: the local store's own file, or a copy the worker spooled
while hashing. Never materialises the table: `iter_batches` holds one batch at a time.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from server.domain.validation.report import ColumnInfo, ColumnStats, Issue, Report
from server.domain.validation.stats import StatsAccumulator

BATCH_ROWS = 64 * 1024


def validate_parquet(path: Path, report: Report) -> None:
    """Read the footer and decode every page of a Parquet file; fill the report."""
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        report.error(Issue("INVALID_PARQUET", f"cannot read the Parquet footer: {_first_line(exc)} "
                                              "(a truncated or corrupt file)"))
        return
    with parquet:
        metadata = parquet.metadata
        schema = parquet.schema_arrow
        report.columns = [ColumnInfo(f.name, str(f.type), f.nullable) for f in schema]
        report.arrow_schema = schema.serialize().to_pybytes()
        report.row_groups = metadata.num_row_groups
        stats = StatsAccumulator(schema)
        decoded = 0
        try:
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS, use_threads=False):
                decoded += batch.num_rows
                stats.add(batch)
        except (pa.ArrowInvalid, OSError) as exc:
            report.error(Issue("CORRUPT_PAGE", f"a page does not decode after row {decoded}: {_first_line(exc)}"))
        if decoded != metadata.num_rows and report.ok:
            report.error(Issue("ROW_COUNT_MISMATCH", f"the footer says {metadata.num_rows} rows; the pages hold "
                                                     f"{decoded}"))
        report.row_count = metadata.num_rows
        report.stats = _with_footer_statistics(stats.result(), metadata)


def _with_footer_statistics(computed: list[ColumnStats], metadata: pq.FileMetaData) -> list[ColumnStats]:
    """Prefer the footer's null counts and min/max where every row group has them."""
    merged = []
    for index, column in enumerate(computed):
        nulls = 0
        complete = metadata.num_row_groups > 0
        for group in range(metadata.num_row_groups):
            if index >= metadata.row_group(group).num_columns:
                complete = False
                break
            statistics = metadata.row_group(group).column(index).statistics
            if statistics is None or not statistics.has_null_count:
                complete = False
                break
            nulls += statistics.null_count
        if complete and nulls == column.null_count:
            column = ColumnStats(column.name, column.type, nulls, column.min, column.max,
                                 column.distinct_estimate, "parquet statistics; distinct computed")
        merged.append(column)
    return merged


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
