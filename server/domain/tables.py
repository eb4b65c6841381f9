"""A version's tables as Arrow record batches, read from the store as a stream (what Arrow Flight serves).

`plan` turns "these files of this version" into parts that can be read in parallel: one per tabular file,
and for a Parquet file above `split_bytes`, one per run of row groups of about that many bytes (its footer
says where they are). `open_part` checks a part against the caller and the version, and `TableStream.batches`
reads it in a worker thread: Parquet through the store's random reader, row group by row group and only the
columns asked for; CSV and JSON Lines through the store's sequential reader with pyarrow's streaming parsers,
typed with the schema validation stored. Memory holds a batch and the reader's buffers, never a file.

A part names its version by its canonical name (by uid), so every part of one plan reads the same version.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import threading
import weakref
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from server.domain.budget import BufferBudget
from server.domain.caller import Caller
from server.domain.datasets import DatasetListing, Datasets
from server.domain.files import FileFilter, Files, tabular
from server.model.datasets import TABULAR_FORMATS, FileFormat
from server.model.errors import FailedPrecondition, Internal, InvalidArgument
from server.model.objects import ChunkReader, ObjectStore, RandomReader
from server.model.versions import Version, VersionFile, VersionView

log = logging.getLogger(__name__)

BATCH_ROWS = 64 * 1024
PARQUET_BUFFER = 1 << 20
TEXT_BLOCK = 4 << 20
READ_CHUNK = 4 << 20


@dataclass(frozen=True)
class TablePart:
    """One independently readable piece of a version's tables: a file, or some row groups of a Parquet file."""

    version: str  # canonical resource name (by uid): exactly the version planned
    path: str
    row_groups: tuple[int, ...] | None  # None: the whole file
    columns: tuple[str, ...] | None  # None: every column
    rows: int
    size: int  # bytes of the file (of its row groups, for a part of one)


@dataclass(frozen=True)
class TablePlan:
    """What a client needs to read a version's tables: the merged schema, the totals, and the parts."""

    version: Version
    schema: pa.Schema
    parts: tuple[TablePart, ...]
    size: int  # bytes of the files the parts read

    @property
    def rows(self) -> int:
        """Rows in all the parts."""
        return sum(p.rows for p in self.parts)


def schema_of(file: VersionFile) -> pa.Schema:
    """The Arrow schema validation stored for a tabular file."""
    if not file.arrow_schema:  # validation stores one for every table: a row without one is a broken invariant
        raise Internal(f"{file.path!r} is {file.format.value} but has no stored schema")
    return pa.ipc.read_schema(pa.py_buffer(file.arrow_schema))


def project(schema: pa.Schema, columns: Sequence[str] | None, where: str) -> pa.Schema:
    """The schema of only `columns`, in their order; INVALID_ARGUMENT (COLUMN_NOT_FOUND) for one it lacks."""
    if columns is None:
        return schema
    for name in columns:
        if schema.get_field_index(name) < 0:
            raise InvalidArgument.field("columns", f"no column {name!r} in {where}; its columns: "
                                                   f"{', '.join(schema.names)}", reason="COLUMN_NOT_FOUND")
    return pa.schema([schema.field(name) for name in columns])


class TableStream:
    """An opened part: its schema, and its batches read from the store (blocking: run it in a worker thread)."""

    def __init__(self, part: TablePart, file: VersionFile, schema: pa.Schema,
                 source: RandomReader | ChunkReader, release: Callable[[], None] = lambda: None) -> None:
        self.part = part
        self.file = file
        self.schema = schema
        self._source = source
        self._release = release

    def batches(self) -> Generator[pa.RecordBatch, None, None]:
        """The part's record batches, in file order; the store reader and the read's share of the buffer budget
        are released at the end or on close."""
        try:
            if self.file.format == FileFormat.PARQUET:
                yield from self._parquet()
            else:
                yield from self._text()
        finally:
            self._source.close()
            self._release()

    def _parquet(self) -> Iterator[pa.RecordBatch]:
        assert isinstance(self._source, RandomReader)
        # A buffered stream reads a column chunk page by page; pre_buffer would hold whole row groups.
        parquet = pq.ParquetFile(self._source, buffer_size=PARQUET_BUFFER, pre_buffer=False)
        groups = list(self.part.row_groups) if self.part.row_groups is not None else None
        columns = list(self.part.columns) if self.part.columns is not None else None
        yield from parquet.iter_batches(batch_size=BATCH_ROWS, row_groups=groups, columns=columns,
                                        use_threads=False)

    def _text(self) -> Iterator[pa.RecordBatch]:
        assert isinstance(self._source, ChunkReader)
        stored = schema_of(self.file)
        raw = ChunkFile(self._source)
        columns = list(self.part.columns) if self.part.columns is not None else None
        if self.file.format == FileFormat.CSV:
            reader = pa_csv.open_csv(raw, read_options=pa_csv.ReadOptions(block_size=TEXT_BLOCK, use_threads=False),
                                     convert_options=pa_csv.ConvertOptions(
                                         column_types={f.name: f.type for f in stored}, include_columns=columns))
            yield from reader
            return
        reader = pa_json.open_json(raw, read_options=pa_json.ReadOptions(block_size=TEXT_BLOCK, use_threads=False),
                                   parse_options=pa_json.ParseOptions(explicit_schema=stored,
                                                                      unexpected_field_behavior="ignore"))
        for batch in reader:
            yield batch if columns is None else batch.select(columns)


class ChunkFile(io.RawIOBase):
    """A store's chunk reader as a forward-only binary file, for pyarrow's streaming parsers."""

    def __init__(self, reader: ChunkReader) -> None:
        super().__init__()
        self._reader = reader
        self._current = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._current:
            chunk = self._reader.next_chunk()
            if not chunk:
                return 0
            self._current = memoryview(chunk)
        size = min(len(buffer), len(self._current))
        buffer[:size] = self._current[:size]
        self._current = self._current[size:]
        return size


class Tables:
    """Plans and opens reads of versions as tables."""

    def __init__(self, files: Files, datasets: Datasets, store: ObjectStore, split_bytes: int,
                 budget: BufferBudget, read_grant: int) -> None:
        self.files = files
        self.datasets = datasets
        self.store = store
        self.split_bytes = split_bytes
        self.budget = budget
        self.read_grant = read_grant

    async def current(self, caller: Caller, name_prefix: str = "") -> list[TablePlan]:
        """The current version of each dataset of the caller's namespace (whose name starts with
        `name_prefix`), planned by file: what Arrow Flight's ListFlights lists."""
        plans = []
        token = ""
        while True:
            found, token = await self.datasets.list(caller, DatasetListing(page_token=token, page_size=1000))
            for dataset in found:
                if dataset.current_version_id is None or not dataset.name.startswith(name_prefix):
                    continue
                plans.append(await self.plan(caller, f"{dataset.resource_name}/versions/latest", split=False))
            if not token:
                return plans

    async def plan(self, caller: Caller, version: str, path: str = "", columns: Sequence[str] | None = None, *,
                   split: bool = True) -> TablePlan:
        """The parts of a version's tabular files: all of them, those under a folder (`path` ending in "/"), or
        one file. FAILED_PRECONDITION when that file is not a table, or the files' schemas do not merge."""
        if path and not path.endswith("/"):
            found = [tabular(await self.files.file(caller, version, path))]
            ready = await self.files.versions.get(caller, version, "version")
        else:
            found, ready = await self._tabular_files(caller, version, path)
        try:
            schema = pa.unify_schemas([schema_of(f) for f in found], promote_options="permissive") if found else \
                pa.schema([])
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise FailedPrecondition(f"the tables of {ready.name} have schemas that do not merge ({exc}); read them "
                                     "one path at a time", reason="SCHEMAS_DIFFER") from None
        schema = project(schema, columns, ready.name)
        wanted = tuple(columns) if columns is not None else None
        parts: list[TablePart] = []
        # A CSV or JSON Lines file with a Parquet rendition is read from it, whole (its row groups are not known
        # here: only a Parquet original is split).
        found = [f.rendered() if f.format != FileFormat.PARQUET else f for f in found]
        for file in found:
            if split and file.format == FileFormat.PARQUET and file.report.row_groups and file.size > self.split_bytes:
                parts += await self._row_group_parts(ready.name, file, wanted)
            else:
                parts.append(TablePart(ready.name, file.path, None, wanted, file.row_count, file.size))
        return TablePlan(ready, schema, tuple(parts), sum(f.size for f in found))

    async def _tabular_files(self, caller: Caller, version: str, prefix: str) -> tuple[list[VersionFile], Version]:
        found: list[VersionFile] = []
        token = ""
        while True:
            page = await self.files.list(caller, version, 1000, token,
                                         FileFilter(prefix, tuple(sorted(TABULAR_FORMATS))), VersionView.FULL)
            found += page.files
            token = page.next_token
            if not token:
                return found, page.version

    async def _row_group_parts(self, version: str, file: VersionFile,
                               columns: tuple[str, ...] | None) -> list[TablePart]:
        source = await self.store.open_random(file.object_key, file.size)

        def footer() -> pq.FileMetaData:
            with source:
                return pq.ParquetFile(source).metadata

        metadata = await asyncio.to_thread(footer)
        parts, groups, rows, size = [], [], 0, 0
        for index in range(metadata.num_row_groups):
            group = metadata.row_group(index)
            groups.append(index)
            rows += group.num_rows
            size += group.total_compressed_size if hasattr(group, "total_compressed_size") else \
                sum(group.column(c).total_compressed_size for c in range(group.num_columns))
            if size >= self.split_bytes or index == metadata.num_row_groups - 1:
                parts.append(TablePart(version, file.path, tuple(groups), columns, rows, size))
                groups, rows, size = [], 0, 0
        return parts or [TablePart(version, file.path, None, columns, file.row_count, file.size)]

    async def open_part(self, caller: Caller, part: TablePart) -> TableStream:
        """A part, checked (the caller may read it; the file is a table; its columns and row groups exist) and
        opened on the store."""
        file = tabular(await self.files.file(caller, part.version, part.path)).rendered()
        schema = project(schema_of(file), part.columns, repr(part.path))
        if part.row_groups is not None:
            if file.format != FileFormat.PARQUET:
                raise InvalidArgument.field("row_groups", f"{part.path!r} is {file.format.value}: only Parquet has "
                                                          "row groups", reason="INVALID_TICKET")
            bad = [g for g in part.row_groups if not 0 <= g < max(file.report.row_groups, 0)]
            if bad:
                raise InvalidArgument.field("row_groups", f"{part.path!r} has row groups 0-"
                                                          f"{file.report.row_groups - 1}; got {bad[0]}",
                                            reason="INVALID_TICKET")
        # Its share of the buffer budget, given back when the batches end (in the thread that reads them), or when
        # the stream is dropped unread.
        await self.budget.take(self.read_grant, f"a read of the table {part.path!r}")
        release = _GiveBack(self.budget, self.read_grant, asyncio.get_running_loop())
        try:
            if file.format == FileFormat.PARQUET:
                source: RandomReader | ChunkReader = await self.store.open_random(file.object_key, file.size)
            else:
                source = await self.store.open_sequential(file.object_key, READ_CHUNK)
        except BaseException:
            release()
            raise
        stream = TableStream(part, file, schema, source, release)
        weakref.finalize(stream, release)
        return stream


class _GiveBack:
    """Give a grant back to the budget once, from any thread (the budget lives on the event loop)."""

    def __init__(self, budget: BufferBudget, nbytes: int, loop: asyncio.AbstractEventLoop) -> None:
        self._budget = budget
        self._nbytes = nbytes
        self._loop = loop
        self._lock = threading.Lock()
        self._done = False

    def __call__(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        with contextlib.suppress(RuntimeError):  # the loop is closed: the process is stopping
            self._loop.call_soon_threadsafe(self._budget.give, self._nbytes)
