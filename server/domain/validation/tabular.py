"""CSV and JSON Lines, parsed with pyarrow's streaming readers: rows, schema, statistics, first errors.

Runs in a worker thread. Ragged CSV rows are reported by line through pyarrow's invalid-row handler and
skipped, so one pass finds the first few. CSV conversion errors carry their row (pyarrow parses without
threads here, so it knows it); a broken JSON line is traced to its line by scanning the most recent bytes
the reader kept.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json

from server.domain.validation.reader import StreamedObject
from server.domain.validation.stats import BackgroundStats, StatsAccumulator
from server.model.report import Issue, Report, first_line

BLOCK_BYTES = 4 << 20
_CSV_CONVERSION = re.compile(
    r"In CSV column #(\d+): (?:Row #(\d+): )?CSV conversion error to ([^:]+): invalid value '(.*)'", re.S)
_JSON_ROW = re.compile(r"in row (\d+)")


def _read_batches(reader: pa.RecordBatchReader, report: Report, locate: Callable[[pa.ArrowInvalid], Issue]) -> None:
    """Count the rows and gather the statistics of every batch; a batch that does not parse is reported
    as `locate` describes it (the rows before it are in report.row_count)."""
    report.set_schema(reader.schema)
    stats = BackgroundStats(StatsAccumulator(reader.schema))
    try:
        for batch in reader:
            report.row_count += batch.num_rows
            stats.add(batch)
        report.stats = stats.result()
    except pa.ArrowInvalid as exc:
        report.error(locate(exc))
    finally:
        stats.close()


def validate_csv(source: StreamedObject, report: Report) -> None:
    """Stream a CSV file through pyarrow; fill the report."""

    def invalid_row(row: pa_csv.InvalidRow) -> str:
        report.error(Issue("RAGGED_ROW", f"line {row.number} has {row.actual_columns} fields; the header has "
                                         f"{row.expected_columns}", line=row.number or 0))
        return "skip"

    try:
        reader = pa_csv.open_csv(
            source, read_options=pa_csv.ReadOptions(block_size=BLOCK_BYTES, use_threads=False),
            parse_options=pa_csv.ParseOptions(invalid_row_handler=invalid_row))
    except pa.ArrowInvalid as exc:
        report.error(Issue("INVALID_CSV", first_line(exc)))
        return
    _read_batches(reader, report, lambda exc: _locate_csv_error(exc, source, report))


def _locate_csv_error(exc: pa.ArrowInvalid, source: StreamedObject, report: Report) -> Issue:
    message = first_line(exc)
    match = _CSV_CONVERSION.search(str(exc))
    if not match:
        return Issue("INVALID_CSV", message)
    index, row, type_name, value = int(match.group(1)), match.group(2), match.group(3), match.group(4)
    column = report.columns[index].name if index < len(report.columns) else f"#{index}"
    if row is not None:  # pyarrow knows the line when it parses without threads
        return Issue("TYPE_MISMATCH", f"line {row}: value {value!r} of column {column!r} is not {type_name} (the "
                                      "type inferred from the first rows)", line=int(row), column=column)
    return Issue("TYPE_MISMATCH", f"value {value!r} of column {column!r} is not {type_name} (the type inferred "
                                  "from the first rows)", column=column)


def validate_jsonl(source: StreamedObject, report: Report) -> None:
    """Stream a JSON Lines file through pyarrow; fill the report."""
    try:
        reader = pa_json.open_json(source, read_options=pa_json.ReadOptions(block_size=BLOCK_BYTES,
                                                                            use_threads=False))
    except pa.ArrowInvalid as exc:
        report.error(_locate_json_error(exc, source, 0))
        return
    _read_batches(reader, report, lambda exc: _locate_json_error(exc, source, report.row_count))


def _locate_json_error(exc: pa.ArrowInvalid, source: StreamedObject, rows_before: int) -> Issue:
    message = first_line(exc)
    start, window = source.window()
    lines = window.split(b"\n")
    skip = 1 if start > 1 else 0  # the window may begin mid-line
    for offset, raw in enumerate(lines[skip:]):
        line = raw.strip()
        if not line:
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            number = start + skip + offset
            return Issue("INVALID_JSON", f"line {number} is not valid JSON: {error.msg}", line=number)
        except UnicodeDecodeError:
            number = start + skip + offset
            return Issue("INVALID_JSON", f"line {number} is not UTF-8", line=number)
        if not isinstance(value, dict):
            number = start + skip + offset
            return Issue("INVALID_JSON", f"line {number} is not a JSON object", line=number)
    match = _JSON_ROW.search(str(exc))
    if match:
        number = rows_before + int(match.group(1)) + 1
        return Issue("TYPE_MISMATCH", f"line {number}: {message}", line=number)
    return Issue("INVALID_JSON", message)

