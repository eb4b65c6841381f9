"""Versions as Arrow tables: `read_table`, `to_pandas` and `dataset`, over a pyarrow file system of one version.

pyarrow is optional (`quarry-client[arrow]`) and imported here, when a table is asked for. Every read goes
through `pyarrow.dataset` over `VersionFileSystem`, whose files are `RemoteFile`s: a Parquet file is read
from its footer, then only the column chunks of the columns asked for, in the row groups whose statistics
the filter does not rule out (pyarrow coalesces the ranges it needs into few large reads); CSV and JSON
Lines are parsed as a stream, with the column types validation found (the stored Arrow schema), so every
read of a file gives the same types as its preview and its Flight stream.

Blocking: AsyncClient runs these in a thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from quarry._exceptions import MissingDependency, NotFound, UsageError
from quarry._reads import TABULAR, FoundFile, Reader
from quarry.v1 import common_pb2

if TYPE_CHECKING:
    import pandas
    import pyarrow
    import pyarrow.dataset

__all__ = ["Filter", "dataset", "read_table", "to_pandas"]

Filter = Any
"""A row filter: a `pyarrow.compute.Expression`, or pyarrow's list-of-tuples form ([("id", ">", 5)])."""

FORMAT_NAMES = {common_pb2.FILE_FORMAT_CSV: "csv", common_pb2.FILE_FORMAT_JSONL: "jsonl",
                common_pb2.FILE_FORMAT_PARQUET: "parquet"}


def _arrow() -> Any:
    try:
        import pyarrow.dataset
    except ImportError as exc:
        raise MissingDependency("tables need pyarrow: pip install 'quarry-client[arrow]'") from exc
    return pyarrow.dataset


def schema_of(found: FoundFile) -> pyarrow.Schema:
    """The Arrow schema validation stored for a tabular file."""
    import pyarrow as pa

    return pa.ipc.read_schema(pa.py_buffer(found.file.report.arrow_schema))


def _tabular(found: FoundFile) -> FoundFile:
    if found.file.format not in TABULAR:
        kind = common_pb2.FileFormat.Name(found.file.format).removeprefix("FILE_FORMAT_")
        raise UsageError(f"{found.path!r} in {found.version} is {kind}, not a table (CSV, JSON Lines or Parquet)")
    return found


def file_format(fmt: int, schema: pyarrow.Schema) -> pyarrow.dataset.FileFormat:
    """The pyarrow.dataset format of a file format, parsing text formats with the stored column types."""
    ds = _arrow()
    import pyarrow.csv as pa_csv
    import pyarrow.json as pa_json

    if fmt == common_pb2.FILE_FORMAT_PARQUET:
        return ds.ParquetFileFormat()
    if fmt == common_pb2.FILE_FORMAT_CSV:
        types = {f.name: f.type for f in schema}
        return ds.CsvFileFormat(convert_options=pa_csv.ConvertOptions(column_types=types))
    return ds.JsonFileFormat(parse_options=pa_json.ParseOptions(explicit_schema=schema,
                                                                unexpected_field_behavior="ignore"))


def _expression(filter: Filter) -> Any:
    if filter is None:
        return None
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if isinstance(filter, pc.Expression):
        return filter
    try:
        return pq.filters_to_expression(filter)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"invalid filter {filter!r}: {exc}") from None


def _check_columns(columns: Sequence[str] | None, schema: pyarrow.Schema, where: str) -> list[str] | None:
    if columns is None:
        return None
    if isinstance(columns, str):
        raise UsageError("columns must be a list of names, not one string")
    unknown = [c for c in columns if schema.get_field_index(c) < 0]
    if unknown:
        raise UsageError(f"no column {unknown[0]!r} in {where}; its columns: {', '.join(schema.names)}")
    return list(columns)


def read_table(reader: Reader, version: str, path: str, columns: Sequence[str] | None = None,
               filter: Filter = None) -> pyarrow.Table:
    """One tabular file of a version as a table: only `columns` (all when None), only rows passing `filter`."""
    ds = _arrow()
    found = _tabular(reader.file(version, path)).rendered()  # a Parquet rendition, where there is one, reads faster
    schema = schema_of(found)
    wanted = _check_columns(columns, schema, f"{path!r}")
    system = VersionFileSystem.of(reader, found.version, [found])
    data = ds.dataset(found.path, filesystem=system, format=file_format(found.file.format, schema), schema=schema)
    return data.to_table(columns=wanted, filter=_expression(filter))


def to_pandas(table: pyarrow.Table) -> pandas.DataFrame:
    """A table as a pandas DataFrame (pandas is optional: `quarry-client[pandas]`)."""
    try:
        import pandas  # noqa: F401
    except ImportError as exc:
        raise MissingDependency("DataFrames need pandas: pip install 'quarry-client[pandas]'") from exc
    return table.to_pandas()


def dataset(reader: Reader, version: str, *, format: str | None = None, prefix: str = "") -> pyarrow.dataset.Dataset:
    """The tabular files of a version (under `prefix`) of one format as a pyarrow Dataset, read lazily."""
    ds = _arrow()
    import pyarrow as pa

    pinned, found = reader.listing(version, prefix=prefix, formats=[format] if format else sorted(FORMAT_NAMES))
    formats = sorted({FORMAT_NAMES[f.file.format] for f in found})
    if not found:
        raise UsageError(f"{pinned} has no {format or 'tabular'} files" + (f" under {prefix!r}" if prefix else ""))
    if len(formats) > 1:
        raise UsageError(f"{pinned} has tables of several formats ({', '.join(formats)}): choose one with format=")
    try:
        schema = pa.unify_schemas([schema_of(f) for f in found], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise UsageError(f"the {formats[0]} files of {pinned} have schemas that do not merge: {exc}") from None
    system = VersionFileSystem.of(reader, pinned, found)
    return ds.dataset([f.path for f in found], filesystem=system, format=file_format(found[0].file.format, schema),
                      schema=schema)


class VersionFileSystem:
    """A read-only pyarrow file system over one version: paths are the version's file paths."""

    @staticmethod
    def of(reader: Reader, version: str, known: Sequence[FoundFile]) -> Any:
        """A `pyarrow.fs.PyFileSystem` over `version` (files in `known` need no lookup)."""
        import pyarrow.fs as pafs

        return pafs.PyFileSystem(_handler_class()(reader, version, {f.path: f for f in known}))


_HANDLER: Any = None


def _handler_class() -> Any:
    """The pyarrow FileSystemHandler, defined on first use (pyarrow is imported only then)."""
    global _HANDLER
    if _HANDLER is not None:
        return _HANDLER
    import pyarrow as pa
    import pyarrow.fs as pafs

    class Handler(pafs.FileSystemHandler):
        def __init__(self, reader: Reader, version: str, known: dict[str, FoundFile]) -> None:
            self.reader, self.version, self.known = reader, version, known

        def _found(self, path: str) -> FoundFile:
            path = path.strip("/")
            return self.known.get(path) or self.reader.file(self.version, path)

        def get_type_name(self) -> str:
            return "quarry"

        def normalize_path(self, path: str) -> str:
            return path.strip("/")

        def get_file_info(self, paths: list[str]) -> list[Any]:
            infos = []
            for path in paths:
                try:
                    size = self._found(path).file.size_bytes
                except NotFound:
                    infos.append(pafs.FileInfo(path, pafs.FileType.NotFound))
                    continue
                infos.append(pafs.FileInfo(path, pafs.FileType.File, size=size))
            return infos

        def get_file_info_selector(self, selector: Any) -> list[Any]:
            prefix = selector.base_dir.strip("/")
            _, found = self.reader.listing(self.version, prefix=f"{prefix}/" if prefix else "", view="basic")
            return [pafs.FileInfo(f.path, pafs.FileType.File, size=f.file.size_bytes) for f in found
                    if selector.recursive or "/" not in f.path[len(prefix) + 1 if prefix else 0:]]

        def open_input_file(self, path: str) -> Any:
            return pa.PythonFile(self.reader.open(self._found(path)), mode="r")

        def open_input_stream(self, path: str) -> Any:
            return self.open_input_file(path)

        def _read_only(self, *_: object) -> Any:
            raise OSError("a version is read-only")

        create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = delete_file = _read_only
        move = copy_file = open_output_stream = open_append_stream = _read_only

    _HANDLER = Handler
    return _HANDLER
