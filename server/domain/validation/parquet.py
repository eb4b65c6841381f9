"""Parquet: the footer (schema, row groups, column statistics), then every page decoded, batch by batch.

Needs random access: a file over the object where range reads are cheap (the local store), else a copy
the worker spooled while hashing. Never materialises the table: `iter_batches` holds one batch at a time.
Every page is decoded anyway, so every column's statistics are computed from every batch (the footer's
row-group statistics would give only nulls, minima and maxima).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from server.domain.validation.stats import BackgroundStats, StatsAccumulator
from server.model.objects import RandomReader
from server.model.report import Issue, Report, first_line

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
        stats = BackgroundStats(StatsAccumulator(schema))
        decoded = 0
        try:
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS, use_threads=True):
                stats.add(batch)
                decoded += batch.num_rows
            report.stats = stats.result()
        except (pa.ArrowInvalid, OSError) as exc:
            report.error(Issue("CORRUPT_PAGE", f"a page does not decode after row {decoded}: {first_line(exc)}"))
            return
        finally:
            stats.close()
        if decoded != metadata.num_rows:
            report.error(Issue("ROW_COUNT_MISMATCH", f"the footer says {metadata.num_rows} rows; the pages hold "
                                                     f"{decoded}"))
        report.row_count = metadata.num_rows

