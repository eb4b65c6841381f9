"""Parquet renditions of CSV and JSON Lines files (the dataset rule `normalize_to_parquet`), written at promotion.

The file streams from fresh storage through pyarrow's streaming parser, typed with the schema validation
inferred, into a zstd Parquet file on local disk: memory holds the parser's block and at most
ROW_GROUP_BYTES of batches (one row group), never the file. The rendition is then content-addressed in fresh
storage like any object (`fresh/{namespace}/{dataset}/objects/{sha256}`, its row touched first so the
collector leaves it alone) and linked to the file it renders (`version_files.rendition_*`). Content rendered
before in the dataset reuses that rendition.

The conversion is strict: a row validation would have refused (a ragged CSV row, a JSON field that does not
fit the schema) fails it with the same reason, before anything is stored; the temporary file goes either way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import re
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from server.domain.tables import ChunkFile, schema_of
from server.model.datasets import FileFormat
from server.model.errors import InvalidFile
from server.model.objects import ChunkReader, ObjectStore
from server.model.report import first_line
from server.model.versions import Rendition, VersionFile
from server.storage import versions as versions_repo
from server.storage.db import Database

RENDERED = frozenset({FileFormat.CSV, FileFormat.JSONL})
BLOCK_BYTES = 4 << 20
ROW_GROUP_BYTES = 64 << 20
READ_CHUNK = 4 << 20
_RAGGED = re.compile(r"Expected (\d+) columns, got (\d+)")


def fresh_key(namespace: str, dataset_id: uuid.UUID, sha256: str) -> str:
    """Where content lives once promoted: keyed by its hash, so a file unchanged between versions is stored once."""
    return f"fresh/{namespace}/{dataset_id}/objects/{sha256}"


def convert(reader: ChunkReader, fmt: FileFormat, schema: pa.Schema, out: Path) -> None:
    """Stream a CSV or JSON Lines file into a zstd Parquet file at `out` (blocking: run it in a worker thread);
    InvalidFile with the row's reason if a row does not fit."""
    raw = ChunkFile(reader)
    try:
        if fmt == FileFormat.CSV:
            batches: pa.RecordBatchReader = pa_csv.open_csv(
                raw, read_options=pa_csv.ReadOptions(block_size=BLOCK_BYTES, use_threads=False),
                parse_options=pa_csv.ParseOptions(invalid_row_handler=lambda row: "error"),
                convert_options=pa_csv.ConvertOptions(column_types={f.name: f.type for f in schema}))
        else:
            batches = pa_json.open_json(
                raw, read_options=pa_json.ReadOptions(block_size=BLOCK_BYTES, use_threads=False),
                parse_options=pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error"))
        with pq.ParquetWriter(out, schema, compression="zstd") as writer:
            pending: list[pa.RecordBatch] = []
            held = 0
            for batch in batches:
                pending.append(batch)
                held += batch.nbytes
                if held >= ROW_GROUP_BYTES:
                    writer.write_table(pa.Table.from_batches(pending, schema))
                    pending, held = [], 0
            if pending:
                writer.write_table(pa.Table.from_batches(pending, schema))
    except pa.ArrowInvalid as exc:
        ragged = _RAGGED.search(str(exc))
        if fmt == FileFormat.CSV and ragged:
            raise InvalidFile(f"a row has {ragged.group(2)} fields; the header has {ragged.group(1)}: "
                              f"{first_line(exc)}", reason="RAGGED_ROW") from None
        raise InvalidFile(f"the file does not convert to Parquet with its schema: {first_line(exc)}",
                          reason="RENDITION_FAILED") from None


def _digest(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest(), path.stat().st_size


async def _chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as file:
        while chunk := await asyncio.to_thread(file.read, READ_CHUNK):
            yield chunk


class Renditions:
    """Writes (or reuses) the Parquet rendition of a promoted file."""

    def __init__(self, db: Database, store: ObjectStore) -> None:
        self.db = db
        self.store = store

    async def render(self, namespace: str, namespace_id: uuid.UUID, dataset_id: uuid.UUID,
                     file: VersionFile) -> VersionFile:
        """`file` (already in fresh storage) with its rendition; unchanged when it is not CSV or JSON Lines."""
        if file.format not in RENDERED:
            return file
        async with self.db.connection() as connection:
            known = await versions_repo.rendition_of(connection, dataset_id, file.sha256)
        if known is not None and await self.store.exists(known.key):
            async with self.db.connection() as connection:  # touched: the collector leaves it alone meanwhile
                await versions_repo.touch_object(connection, key=known.key, namespace_id=namespace_id,
                                                 dataset_id=dataset_id, sha256=known.sha256, size=known.size)
            return dataclasses.replace(file, rendition=known)
        schema = schema_of(file)
        with tempfile.TemporaryDirectory(prefix="quarry-rendition-") as scratch:
            out = Path(scratch) / "rendition.parquet"
            source = await self.store.open_sequential(file.object_key, READ_CHUNK)
            try:
                await asyncio.to_thread(convert, source, file.format, schema, out)
            finally:
                await asyncio.to_thread(source.close)
            sha256, size = await asyncio.to_thread(_digest, out)
            key = fresh_key(namespace, dataset_id, sha256)
            async with self.db.connection() as connection:
                await versions_repo.touch_object(connection, key=key, namespace_id=namespace_id,
                                                 dataset_id=dataset_id, sha256=sha256, size=size)
            if not await self.store.exists(key):
                await self.store.put(key, _chunks(out))
        return dataclasses.replace(file, rendition=Rendition(key, size, sha256))
