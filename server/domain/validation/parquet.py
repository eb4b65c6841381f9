"""Parquet: the footer (schema, row groups, column statistics), then every page decoded, batch by batch.

Needs random access: a file over the object where range reads are cheap (the local store), else a copy
the worker spooled while hashing. Never materialises the table: `iter_batches` holds one batch at a time.
Null counts, minima and maxima come from the footer wherever every row group has them; the distinct
estimate of those columns comes from the first row group; other columns' statistics are computed from
every batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from server.domain.validation.stats import BackgroundStats, StatsAccumulator, text_of
from server.model.objects import RandomReader
from server.model.report import ColumnStats, Issue, Report, first_line

BATCH_ROWS = 64 * 1024


def validate_parquet(source: Path | BinaryIO | RandomReader, report: Report) -> None:
    """Read the footer and decode every page of a Parquet file; fill the report."""
    try:
        # pre_buffer would fetch every row group's column chunks ahead: the whole file in memory (measured).
        # Page checksums, where the writer left them, are verified: a flipped byte in a page that still
        # decodes would otherwise pass as different data.
        parquet = pq.ParquetFile(source, pre_buffer=False, page_checksum_verification=True)
    except (pa.ArrowInvalid, OSError) as exc:
        report.error(Issue("INVALID_PARQUET", f"cannot read the Parquet footer: {first_line(exc)} "
                                              "(a truncated or corrupt file)"))
        return
    with parquet:
        metadata = parquet.metadata
        schema = parquet.schema_arrow
        report.set_schema(schema)
        report.row_groups = metadata.num_row_groups
        footer = _footer_statistics(metadata, len(schema))
        computed = [i for i in range(len(schema)) if i not in footer]
        full = BackgroundStats(StatsAccumulator(pa.schema([schema.field(i) for i in computed])))
        sampled = BackgroundStats(StatsAccumulator(pa.schema([schema.field(i) for i in footer])))
        first_group = metadata.row_group(0).num_rows if metadata.num_row_groups else 0
        decoded = 0
        try:
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS, use_threads=True):
                if computed:
                    full.add(batch.select(computed))
                if footer and decoded < first_group:
                    sampled.add(batch.select(list(footer)))
                decoded += batch.num_rows
            full_stats, sample_stats = full.result(), sampled.result("parquet statistics")
        except (pa.ArrowInvalid, OSError) as exc:
            report.error(Issue("CORRUPT_PAGE", f"a page does not decode after row {decoded}: {first_line(exc)}"))
            return
        finally:
            full.close()
            sampled.close()
        if decoded != metadata.num_rows:
            report.error(Issue("ROW_COUNT_MISMATCH", f"the footer says {metadata.num_rows} rows; the pages hold "
                                                     f"{decoded}"))
        report.row_count = metadata.num_rows
        by_index = dict(zip(computed, full_stats, strict=True))
        for index, stats in zip(footer, sample_stats, strict=True):
            nulls, low, high = footer[index]
            by_index[index] = ColumnStats(stats.name, stats.type, nulls, text_of(low), text_of(high),
                                          stats.distinct_estimate,
                                          "parquet statistics; distinct estimated from the first row group")
        report.stats = [by_index[i] for i in range(len(schema))]


def _footer_statistics(metadata: pq.FileMetaData, columns: int) -> dict[int, tuple[int, Any, Any]]:
    """(nulls, min, max) of each top-level column whose statistics every row group has."""
    found: dict[int, tuple[int, Any, Any]] = {}
    if metadata.num_row_groups == 0 or metadata.num_columns != columns:
        return found  # nested columns: leaves do not map one to one onto top-level columns
    for index in range(columns):
        nulls, low, high = 0, None, None
        try:
            for group in range(metadata.num_row_groups):
                statistics = metadata.row_group(group).column(index).statistics
                if statistics is None or not statistics.has_null_count or not statistics.has_min_max:
                    break
                nulls += statistics.null_count
                low = statistics.min if low is None or statistics.min < low else low
                high = statistics.max if high is None or statistics.max > high else high
            else:
                found[index] = (nulls, low, high)
        except (ValueError, TypeError, pa.ArrowException):
            continue  # e.g. nanosecond timestamps have no exact Python value: computed from the pages instead
    return found

