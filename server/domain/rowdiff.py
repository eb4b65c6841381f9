"""Row-level differences of one tabular file between two versions, rows matched by key columns, in bounded memory.

The two files are read from the store one after the other, as record batches (`Tables.open_part`). Each row
goes to one of P partitions by a hash of its key and is appended to that partition's temporary Arrow IPC file;
P is chosen so that a partition holds about PARTITION_BYTES of a side. Then partition by partition, the base and
target halves are loaded and joined on the key (pyarrow's hash join), and counted. Memory holds one batch while
reading and one partition pair while joining, never a file: a 10-million-row file diffs like a small one, only
longer, with its spill on the server's temporary directory (TMPDIR).

A key must name each row once: a key value found twice in one file refuses the comparison (DUPLICATE_KEY), as
does a null in a key column (NULL_KEY). A row present in both files is changed when any column the two files
share with the same type differs; columns added, removed or retyped are DiffVersions' schema change, not row
changes. Two NaNs are equal, a null equals only a null. The sample rows are the first of each kind in file order
(the target's for added and changed rows, the base's for removed ones).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from server.domain.budget import BufferBudget
from server.domain.caller import Caller
from server.domain.files import Files, tabular
from server.domain.jsonrows import column_values, json_rows
from server.domain.tables import TablePart, Tables, schema_of
from server.model import names
from server.model.datasets import FileFormat
from server.model.errors import FailedPrecondition, InvalidArgument
from server.model.versions import VersionFile

MiB = 1 << 20
PARTITION_BYTES = 4 * MiB  # of Arrow data per side and partition: a join holds about four times that
JOIN_GRANT = 32 * MiB  # what the join of one partition pair may hold, from the server's buffer budget
MAX_PARTITIONS = 4096
DEFAULT_SAMPLE_ROWS = 10
MAX_SAMPLE_ROWS = 100
BASE, TARGET = "b", "t"  # the prefixes of the two sides' generated column names

T = TypeVar("T")


@dataclass(frozen=True)
class RowChange:
    """A key present in both files with different values: both rows, as JSON objects, and the columns that differ."""

    base_row: str
    target_row: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class RowDiff:
    """How the rows of one file differ between two versions: counts, and the first rows of each kind."""

    added: int
    removed: int
    changed: int
    unchanged: int
    added_rows: tuple[str, ...]
    removed_rows: tuple[str, ...]
    changed_rows: tuple[RowChange, ...]
    compared_columns: tuple[str, ...]


class Stopped(Exception):
    """The caller went away: the comparison stops at the next batch."""


class RowDiffs:
    """DiffRows: compare one tabular file of two versions row by row."""

    def __init__(self, files: Files, tables: Tables, budget: BufferBudget) -> None:
        self.files = files
        self.tables = tables
        self.budget = budget

    async def diff(self, caller: Caller, base: str, target: str, path: str, keys: Sequence[str],
                   sample_rows: int = 0) -> RowDiff:
        """The rows of `path` added, removed and changed from version `base` to `target` (one dataset), matched by
        the `keys` columns."""
        base_ref = names.parse_version(base, "base_version")
        target_ref = names.parse_version(target, "target_version")
        if base_ref.dataset != target_ref.dataset:
            raise InvalidArgument.field("target_version", f"{target} is not a version of {base_ref.dataset.name}",
                                        reason="DIFFERENT_DATASETS")
        names.file_path(path, "path")
        keys = key_columns(keys)
        sample = sample_size(sample_rows)
        old_version = await self.files.versions.get(caller, base, "base_version")
        new_version = await self.files.versions.get(caller, target, "target_version")
        old = tabular(await self.files.file(caller, old_version.name, path)).rendered()
        new = tabular(await self.files.file(caller, new_version.name, path)).rendered()
        stored = {"base": schema_of(old), "target": schema_of(new)}
        check_keys(keys, stored["base"], stored["target"])
        stop = threading.Event()
        scratch = Path(tempfile.mkdtemp(prefix="quarry-rowdiff-"))  # under TMPDIR
        try:
            spread = Spread(scratch, keys, partitions_for(old, new), stop)
            for side, version, file in (("base", old_version.name, old), ("target", new_version.name, new)):
                # One file at a time: a read holds its own share of the buffer budget while it lasts.
                stream = await self.tables.open_part(caller, TablePart(version, path, None, None, file.row_count,
                                                                       file.size))
                await _in_thread(stop, spread.add, side, stream.batches(), stored[side])
            async with self.budget.hold(min(JOIN_GRANT, self.budget.limit), f"a row diff of {path!r}"):
                return await _in_thread(stop, spread.compare, sample)
        finally:  # up to two files a partition: removed off the event loop
            await asyncio.to_thread(shutil.rmtree, scratch, ignore_errors=True)


async def _in_thread(stop: threading.Event, function: Callable[..., T], *args: object) -> T:
    """`function(*args)` in a worker thread; if this task is cancelled, tell it to stop and wait until it has, so
    that nothing writes to the scratch directory once it is removed."""
    work = asyncio.ensure_future(asyncio.to_thread(function, *args))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        stop.set()
        with contextlib.suppress(BaseException):
            await work
        raise


def key_columns(keys: Sequence[str]) -> list[str]:
    """The key columns as asked: at least one, each once."""
    if not keys:
        raise InvalidArgument.field("key_columns", "name at least one column that identifies a row",
                                    reason="INVALID_ARGUMENT")
    if len(set(keys)) != len(keys) or not all(keys):
        raise InvalidArgument.field("key_columns", f"key columns must be named once each, not empty: {list(keys)}",
                                    reason="INVALID_ARGUMENT")
    return list(keys)


def sample_size(requested: int) -> int:
    """Rows of each kind to return: 0 means DEFAULT_SAMPLE_ROWS, above MAX_SAMPLE_ROWS means that."""
    if requested < 0:
        raise InvalidArgument.field("sample_rows", "must not be negative", reason="INVALID_ROW_LIMIT")
    return min(requested or DEFAULT_SAMPLE_ROWS, MAX_SAMPLE_ROWS)


def check_keys(keys: Sequence[str], base: pa.Schema, target: pa.Schema) -> None:
    """Every key column in both files, of one plain type."""
    for name in keys:
        for side, schema in (("base", base), ("target", target)):
            found = len(schema.get_all_field_indices(name))
            if found == 0:
                raise InvalidArgument.field("key_columns", f"no column {name!r} in the {side} file; its columns: "
                                                           f"{', '.join(schema.names)}", reason="COLUMN_NOT_FOUND")
            if found > 1:
                raise InvalidArgument.field("key_columns", f"the {side} file has {found} columns named {name!r}: a "
                                                           "key must name one", reason="INVALID_ARGUMENT")
        kind = base.field(name).type
        if kind != target.field(name).type:
            raise FailedPrecondition(f"key column {name!r} is {kind} in the base file and {target.field(name).type} "
                                     "in the target: rows cannot be matched", reason="SCHEMAS_DIFFER",
                                     metadata={"column": name})
        if pa.types.is_nested(kind) or pa.types.is_dictionary(kind):
            raise InvalidArgument.field("key_columns", f"key column {name!r} is {kind}: a key must be a plain value",
                                        reason="INVALID_ARGUMENT")


def partitions_for(base: VersionFile, target: VersionFile) -> int:
    """How many partitions keep a side of each under PARTITION_BYTES, from the files' sizes (Parquet is compressed:
    about four times its size in memory; CSV and JSON Lines about their size)."""
    def in_memory(file: VersionFile) -> float:
        return file.size * (4 if file.format == FileFormat.PARQUET else 1.5)

    return max(1, min(MAX_PARTITIONS, math.ceil(max(in_memory(base), in_memory(target)) / PARTITION_BYTES)))


def partition_ids(batch: pa.RecordBatch, keys: Sequence[str], count: int) -> np.ndarray:
    """The partition of each row of `batch`: a hash of its key, so that equal keys of both files meet."""
    if count == 1:
        return np.zeros(batch.num_rows, dtype=np.int64)
    columns = [batch.column(name).to_pylist() for name in keys]
    values: Iterable[object] = columns[0] if len(columns) == 1 else zip(*columns, strict=True)
    # Python's hash: one process computes both sides, so its per-process salt for text does not matter.
    return np.fromiter((hash(value) % count for value in values), dtype=np.int64, count=batch.num_rows)


@dataclass(frozen=True)
class Columns:
    """One side's columns under the names the spill and the join use: the keys k0, k1..., the other columns by
    position (b0, b1... in the base, t0, t1... in the target), and the row numbers (brow, trow: the order of
    samples). Generated names never meet a file's own, whatever the file calls its columns."""

    names: tuple[str, ...]  # the file's, in its order
    generated: tuple[str, ...]  # the spill's and the join's name of each
    row: str

    @classmethod
    def of(cls, names: Sequence[str], keys: Sequence[str], prefix: str) -> Columns:
        keys = list(keys)
        return cls(tuple(names), tuple(f"k{keys.index(name)}" if name in keys else f"{prefix}{index}"
                                       for index, name in enumerate(names)), f"{prefix}row")

    def of_name(self, name: str) -> str:
        """The generated name of the file's column `name` (its first, if the file repeats a name)."""
        return self.generated[self.names.index(name)]

    def schema(self, schema: pa.Schema) -> pa.Schema:
        """`schema` (the file's) under the generated names, with the row numbers; a column of nulls only (type
        null, which the join does not carry) as text, still all nulls."""
        fields = [pa.field(name, pa.string() if pa.types.is_null(f.type) else f.type)
                  for name, f in zip(self.generated, schema, strict=True)]
        return pa.schema([*fields, pa.field(self.row, pa.int64())])


class Spread:
    """Both files' rows, spread over `count` partition files a side by key, then compared a partition at a time."""

    def __init__(self, directory: Path, keys: Sequence[str], count: int, stop: threading.Event) -> None:
        self.directory = directory
        self.keys = list(keys)
        self.count = count
        self.stop = stop
        self.columns: dict[str, Columns] = {}
        self.schemas: dict[str, pa.Schema] = {}  # of the spill files

    def _file(self, side: str, index: int) -> Path:
        return self.directory / f"{side}-{index}.arrow"

    def add(self, side: str, batches: Iterator[pa.RecordBatch], stored: pa.Schema) -> None:
        """Spread one side's batches (blocking: runs in a worker thread). `stored` is the file's schema as
        validation recorded it: the side's schema if the file has no batch at all."""
        prefix = BASE if side == "base" else TARGET
        self.columns[side] = Columns.of(stored.names, self.keys, prefix)
        self.schemas[side] = self.columns[side].schema(stored)
        writers: dict[int, pa.ipc.RecordBatchFileWriter] = {}
        rows = 0
        first = True
        try:
            for batch in batches:
                if self.stop.is_set():
                    raise Stopped()
                for name in self.keys:
                    if batch.column(name).null_count:
                        raise FailedPrecondition(f"key column {name!r} has a null in the {side} file: every row "
                                                 "needs a key", reason="NULL_KEY", metadata={"column": name,
                                                                                            "file": side})
                if first:  # what the reader gives, which the stored schema only describes
                    self.columns[side] = Columns.of(batch.schema.names, self.keys, prefix)
                    self.schemas[side], first = self.columns[side].schema(batch.schema), False
                schema = self.schemas[side]
                numbered = pa.RecordBatch.from_arrays(
                    [*batch.columns, pa.array(np.arange(rows, rows + batch.num_rows), pa.int64())], schema=schema)
                rows += batch.num_rows
                ids = partition_ids(batch, self.keys, self.count)
                order = np.argsort(ids, kind="stable")
                grouped = numbered.take(pa.array(order))
                sizes = np.bincount(ids, minlength=self.count)
                start = 0
                for index in np.nonzero(sizes)[0].tolist():
                    if index not in writers:
                        writers[index] = pa.ipc.new_file(self._file(side, index), schema)
                    writers[index].write_batch(grouped.slice(start, int(sizes[index])))
                    start += int(sizes[index])
        finally:
            for writer in writers.values():
                writer.close()
            close = getattr(batches, "close", None)
            if close is not None:  # the read's buffer grant goes back now, not when the generator is collected
                close()

    def _read(self, side: str, index: int, schema: pa.Schema) -> pa.Table:
        path = self._file(side, index)
        if not path.exists():
            return schema.empty_table()
        with pa.memory_map(str(path)) as source:
            return pa.ipc.open_file(source).read_all()

    def compare(self, sample: int) -> RowDiff:
        """Join each partition pair and count (blocking: runs in a worker thread)."""
        base, target = self.columns["base"], self.columns["target"]
        compared = [name for name in target.names if name not in self.keys and name in base.names
                    and self.schemas["base"].field(base.of_name(name)).type ==
                    self.schemas["target"].field(target.of_name(name)).type]
        keys = [f"k{index}" for index in range(len(self.keys))]
        tally = _Tally(compared, base, target, sample)
        for index in range(self.count):
            if self.stop.is_set():
                raise Stopped()
            old = self._read("base", index, self.schemas["base"])
            new = self._read("target", index, self.schemas["target"])
            _unique(old, self.keys, base.row, "base")
            _unique(new, self.keys, target.row, "target")
            tally.add(old.join(new, keys=keys, join_type="full outer", use_threads=False))
        return tally.result()


def _unique(table: pa.Table, names: Sequence[str], row: str, side: str) -> None:
    """DUPLICATE_KEY when a key value names two rows of one file. `names` are the file's key columns; the
    table's are k0, k1..."""
    if table.num_rows == 0:
        return
    keys = [f"k{index}" for index in range(len(names))]
    counts = table.group_by(keys, use_threads=False).aggregate([(row, "count")])
    repeated = counts.filter(pc.greater(counts[f"{row}_count"], 1))
    if repeated.num_rows:
        example = json.dumps({name: column_values(repeated.column(key).slice(0, 1))[0]
                              for name, key in zip(names, keys, strict=True)}, default=str)
        raise FailedPrecondition(f"key {example} names {repeated[f'{row}_count'][0].as_py()} rows of the {side} "
                                 "file: a key must name one row", reason="DUPLICATE_KEY",
                                 metadata={"file": side, "key": example})


def _differs(base: pa.ChunkedArray, target: pa.ChunkedArray) -> pa.ChunkedArray:
    """Per row, whether two values differ: a null equals only a null, and NaN equals NaN."""
    one_null = pc.xor(pc.is_null(base), pc.is_null(target))
    unequal = pc.fill_null(pc.not_equal(base, target), False)
    if pa.types.is_floating(base.type):
        unequal = pc.and_(unequal, pc.invert(pc.and_(pc.fill_null(pc.is_nan(base), False),
                                                     pc.fill_null(pc.is_nan(target), False))))
    return pc.or_(one_null, unequal)


class _Tally:
    """Counts over the partitions, and the first rows of each kind seen so far."""

    def __init__(self, compared: Sequence[str], base: Columns, target: Columns, sample: int) -> None:
        self.compared = list(compared)
        self.base = base
        self.target = target
        self.sample = sample
        self.added = self.removed = self.changed = self.unchanged = 0
        self.firsts: dict[str, pa.Table | None] = {"added": None, "removed": None, "changed": None}

    def _pairs(self, rows: pa.Table) -> list[tuple[str, pa.ChunkedArray]]:
        """Per compared column: its name, and whether each row's two values differ."""
        return [(name, _differs(rows[self.base.of_name(name)], rows[self.target.of_name(name)]))
                for name in self.compared]

    def add(self, joined: pa.Table) -> None:
        base_row, target_row = joined[self.base.row], joined[self.target.row]
        added = pc.is_null(base_row)
        removed = pc.is_null(target_row)
        both = pc.and_(pc.is_valid(base_row), pc.is_valid(target_row))
        differ = pa.chunked_array([pa.array(np.zeros(joined.num_rows, dtype=bool))])
        for _, differs in self._pairs(joined):
            differ = pc.or_(differ, differs)
        changed = pc.and_(both, differ)
        counts = {kind: pc.sum(mask).as_py() or 0 for kind, mask in
                  (("added", added), ("removed", removed), ("both", both), ("changed", changed))}
        self.added += counts["added"]
        self.removed += counts["removed"]
        self.changed += counts["changed"]
        self.unchanged += counts["both"] - counts["changed"]
        for kind, mask, order in (("added", added, self.target.row), ("removed", removed, self.base.row),
                                  ("changed", changed, self.target.row)):
            self._keep(kind, joined.filter(mask), order)

    def _keep(self, kind: str, rows: pa.Table, order: str) -> None:
        """The first `sample` rows of a kind, by `order`, of those kept so far and `rows`."""
        if rows.num_rows == 0:
            return
        kept = self.firsts[kind]
        both = rows if kept is None else pa.concat_tables([kept, rows])
        self.firsts[kind] = both.take(pc.sort_indices(both, sort_keys=[(order, "ascending")])[:self.sample])

    def _rows(self, rows: pa.Table | None, side: Columns) -> list[str]:
        """The rows of one side as JSON objects, under that file's column names in its order."""
        if rows is None:
            return []
        return json_rows(pa.table({name: rows[generated] for name, generated in zip(side.names, side.generated,
                                                                                     strict=True)}))

    def result(self) -> RowDiff:
        changed = self.firsts["changed"]
        changes: list[RowChange] = []
        if changed is not None:
            flags = [(name, differs.to_pylist()) for name, differs in self._pairs(changed)]
            for index, (old, new) in enumerate(zip(self._rows(changed, self.base), self._rows(changed, self.target),
                                                   strict=True)):
                changes.append(RowChange(old, new, tuple(name for name, row_flags in flags if row_flags[index])))
        return RowDiff(self.added, self.removed, self.changed, self.unchanged,
                       tuple(self._rows(self.firsts["added"], self.target)),
                       tuple(self._rows(self.firsts["removed"], self.base)), tuple(changes), tuple(self.compared))
