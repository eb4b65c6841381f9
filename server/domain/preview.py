"""The first rows of a tabular file, reading only the bytes they need.

Parquet: pyarrow reads the footer, then only the pages of the first row group(s) that hold the rows,
through the store's `RandomReader` (buffered range reads; never the whole object). From a remote store, the start of
every column chunk of the first row group is fetched at once first, so the pages cost one round trip rather
than a few per column. CSV and JSON Lines: a prefix of the
file that grows (64 KiB, then doubling) until it holds enough whole lines, cut at its last newline. A
validated file has one row per line (pyarrow's default: no newlines inside values), so the cut never splits a
row. Rows parse with the schema stored at validation, so their types are the file's.

The response carries the rows twice (Arrow IPC and JSON); rows that would push it past PREVIEW_BYTES are
left out (`row_count` says how many came), because a plain gRPC client refuses messages above 4 MiB.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from server.domain.jsonrows import json_rows
from server.model.datasets import FileFormat
from server.model.objects import ObjectStore, RandomReader
from server.model.report import ColumnInfo
from server.model.versions import VersionFile

PREVIEW_BYTES = 3 << 20
SCAN_BYTES = 64 << 20
FIRST_WINDOW = 64 << 10
MAX_WINDOW = 4 << 20
PARQUET_BUFFER = 64 << 10
PARQUET_BATCH_ROWS = 1024
PREFETCH_BYTES = 8 << 20
PREFETCH_COLUMN_BYTES = 2 << 20


@dataclass(frozen=True)
class Preview:
    """The first rows of a file, in both encodings, and how many bytes of the file were read for them."""

    arrow_ipc: bytes
    json_rows: tuple[str, ...]
    columns: tuple[ColumnInfo, ...]
    row_count: int
    total_rows: int
    bytes_read: int


async def preview_file(store: ObjectStore, file: VersionFile, limit: int) -> Preview:
    """The first `limit` rows of a CSV, JSON Lines or Parquet file (fewer if they exceed PREVIEW_BYTES)."""
    if file.format == FileFormat.PARQUET:
        table, bytes_read = await _parquet(store, file, limit)
    else:
        table, bytes_read = await _lines(store, file, limit)
    return await asyncio.to_thread(_encode, table, file, bytes_read)


async def _parquet(store: ObjectStore, file: VersionFile, limit: int) -> tuple[pa.Table, int]:
    source = await store.open_random(file.object_key, file.size)

    def read() -> tuple[pa.Table, int]:
        with source:
            return first_parquet_rows(source, limit), source.bytes_fetched

    return await asyncio.to_thread(read)


def first_parquet_rows(source: RandomReader, limit: int) -> pa.Table:
    """The first `limit` rows of a Parquet file: the footer, then pages of the first row group(s) only."""
    # pre_buffer would fetch whole column chunks (a whole row group); a small buffer reads page by page.
    parquet = pq.ParquetFile(source, buffer_size=PARQUET_BUFFER, pre_buffer=False)
    if parquet.metadata.num_row_groups:
        source.prefetch(_first_pages(parquet.metadata.row_group(0)))
    batches: list[pa.RecordBatch] = []
    rows = size = 0
    for batch in parquet.iter_batches(batch_size=min(limit, PARQUET_BATCH_ROWS), use_threads=False):
        batches.append(batch)
        rows += batch.num_rows
        size += batch.nbytes
        if rows >= limit or size >= SCAN_BYTES:
            break
    return pa.Table.from_batches(batches, schema=parquet.schema_arrow).slice(0, limit)


def _first_pages(group: pq.RowGroupMetaData) -> list[tuple[int, int]]:
    """The start of each column chunk of a row group (its dictionary and first data pages, usually)."""
    each = max(PARQUET_BUFFER, min(PREFETCH_COLUMN_BYTES, PREFETCH_BYTES // max(group.num_columns, 1)))
    ranges = []
    for index in range(min(group.num_columns, PREFETCH_BYTES // each)):
        chunk = group.column(index)
        start = chunk.dictionary_page_offset if chunk.has_dictionary_page else chunk.data_page_offset
        ranges.append((start, min(each, chunk.total_compressed_size)))
    return ranges


async def _lines(store: ObjectStore, file: VersionFile, limit: int) -> tuple[pa.Table, int]:
    schema = pa.ipc.read_schema(pa.py_buffer(file.arrow_schema)) if file.arrow_schema else None
    wanted = limit + 1 if file.format == FileFormat.CSV else limit  # a CSV's first line is its header
    end = min(file.size, SCAN_BYTES)
    buffer = bytearray()
    lines = 0
    window = FIRST_WINDOW
    while True:
        chunk = await store.read_range(file.object_key, len(buffer), min(window, end - len(buffer)))
        buffer += chunk
        lines += chunk.count(b"\n")
        done = len(buffer) >= end or not chunk
        if lines >= wanted or done:
            whole = len(buffer) >= file.size
            data = bytes(buffer) if whole else bytes(buffer[:buffer.rfind(b"\n") + 1])
            table = await asyncio.to_thread(_parse, file.format, data, schema)
            if table.num_rows >= limit or done:
                return table.slice(0, limit), len(buffer)
        window = min(window * 2, MAX_WINDOW)


def _parse(fmt: FileFormat, data: bytes, schema: pa.Schema | None) -> pa.Table:
    """Whole lines of a CSV (with its header) or JSON Lines file, as one block."""
    if not data.strip():
        return (schema or pa.schema([])).empty_table()
    block = len(data) + 1  # one block: a row longer than a block would fail as "straddling"
    if fmt == FileFormat.CSV:
        types = {f.name: f.type for f in schema} if schema is not None else None
        return pa_csv.read_csv(pa.BufferReader(data),
                               read_options=pa_csv.ReadOptions(block_size=block, use_threads=False),
                               convert_options=pa_csv.ConvertOptions(column_types=types))
    options = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore") if schema else None
    return pa_json.read_json(pa.BufferReader(data),
                             read_options=pa_json.ReadOptions(block_size=block, use_threads=False),
                             parse_options=options)


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _encode(table: pa.Table, file: VersionFile, bytes_read: int) -> Preview:
    rows = json_rows(table)
    ipc = _ipc(table)
    sizes = [len(row.encode()) for row in rows]
    if len(ipc) + sum(sizes) > PREVIEW_BYTES:
        per_row = len(ipc) / max(table.num_rows, 1)
        keep = used = 0
        for size in sizes:
            used += size + per_row
            if used > PREVIEW_BYTES:
                break
            keep += 1
        table, rows = table.slice(0, keep), rows[:keep]
        ipc = _ipc(table)
    return Preview(arrow_ipc=ipc, json_rows=tuple(rows), columns=file.columns, row_count=table.num_rows,
                   total_rows=file.row_count, bytes_read=bytes_read)
