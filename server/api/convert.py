"""Conversions between domain models and contract messages."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from google.protobuf import duration_pb2, timestamp_pb2
from google.rpc import code_pb2
from quarry.v1 import common_pb2, dataset_pb2, dataset_service_pb2, upload_pb2, version_pb2

from server.api import wire
from server.api.errors import code_for_kind
from server.domain.diff import FileChange, SchemaChange, VersionDiff
from server.domain.files import DownloadUrl, FilePage, FileRead
from server.domain.preview import Preview
from server.domain.rowdiff import RowDiff
from server.model.datasets import Dataset, DatasetRules, FileFormat
from server.model.errors import InvalidArgument
from server.model.failures import Failure
from server.model.names import version_name
from server.model.report import ColumnInfo, ColumnStats, Issue
from server.model.uploads import Upload
from server.model.versions import Version, VersionFile, VersionView

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    """A protobuf Timestamp, or None to leave the field unset."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # as Timestamp.FromDatetime reads a naive value: UTC
    # Integer arithmetic, exact to the microsecond, and a fifth of FromDatetime's cost (it goes through timegm).
    since = value - _EPOCH
    return timestamp_pb2.Timestamp(seconds=since.days * 86400 + since.seconds, nanos=since.microseconds * 1000)


def failure(value: Failure | None) -> common_pb2.Failure | None:
    """The contract's Failure for a stored one."""
    if value is None:
        return None
    code = code_for_kind(value.kind)
    return common_pb2.Failure(code=getattr(code_pb2, code.name), reason=value.reason, message=value.message,
                              path=value.path, retryable=value.retryable)


def upload(value: Upload) -> upload_pb2.Upload:
    """The contract's Upload."""
    message = upload_pb2.Upload(
        name=value.name,
        uid=str(value.id),
        dataset=value.dataset,
        path=value.path,
        declared_sha256=value.declared_sha256 or "",
        content_type=value.content_type,
        auto_commit=value.auto_commit,
        commit_message=value.commit_message,
        state=f"UPLOAD_STATE_{value.state.value}",
        part_size_bytes=value.part_size,
        committed_bytes=value.committed_bytes,
        parts=[upload_pb2.UploadPart(part_number=p.number, offset=p.offset, size_bytes=p.size, crc32c=p.crc32c)
               for p in value.parts],
        size_bytes=value.size or 0,
        sha256=value.sha256 or "",
        failure=failure(value.failure),
        version=value.version_name or "",
        expire_time=timestamp(value.expire_time),
        create_time=timestamp(value.create_time),
        update_time=timestamp(value.update_time),
    )
    if value.declared_size is not None:
        message.declared_size_bytes = value.declared_size
    return message


def dataset_rules(value: DatasetRules) -> dataset_pb2.DatasetRules:
    """The contract's DatasetRules."""
    return dataset_pb2.DatasetRules(
        max_file_bytes=value.max_file_bytes,
        allowed_formats=[file_format(f) for f in value.allowed_formats],
        min_rows=value.min_rows,
        required_columns=list(value.required_columns),
        allow_breaking_schema_changes=value.allow_breaking_schema_changes,
        normalize_to_parquet=value.normalize_to_parquet,
    )


def formats_from(numbers: Iterable[int], field: str, reason: str) -> tuple[FileFormat, ...]:
    """Domain formats from the contract's enum numbers; INVALID_ARGUMENT for UNSPECIFIED or an unknown one."""
    formats = []
    for number in numbers:
        try:
            formats.append(FileFormat(common_pb2.FileFormat.Name(number).removeprefix("FILE_FORMAT_")))
        except ValueError:
            # UNSPECIFIED is no format, and a number this server does not know (a newer client) is none either.
            raise InvalidArgument.field(field, f"{number} is not a file format; use "
                                        f"{', '.join(file_format(f) for f in FileFormat)}", reason=reason) from None
    return tuple(formats)


def view_from(number: int, field: str = "view") -> VersionView:
    """The domain's view of a VersionView number (UNSPECIFIED is BASIC); INVALID_ARGUMENT for an unknown one."""
    if number == dataset_service_pb2.VERSION_VIEW_FULL:
        return VersionView.FULL
    if number in (dataset_service_pb2.VERSION_VIEW_UNSPECIFIED, dataset_service_pb2.VERSION_VIEW_BASIC):
        return VersionView.BASIC
    raise InvalidArgument.field(field, f"{number} is not a view; use VERSION_VIEW_BASIC or VERSION_VIEW_FULL",
                                reason="INVALID_VIEW")


def rules_from(message: dataset_pb2.DatasetRules) -> DatasetRules:
    """Domain rules from the contract's; INVALID_ARGUMENT for a format that is UNSPECIFIED or unknown."""
    formats = formats_from(message.allowed_formats, "dataset.rules.allowed_formats", "INVALID_RULES")
    return DatasetRules(max_file_bytes=message.max_file_bytes, allowed_formats=formats,
                        min_rows=message.min_rows, required_columns=tuple(message.required_columns),
                        allow_breaking_schema_changes=message.allow_breaking_schema_changes,
                        normalize_to_parquet=message.normalize_to_parquet)


def dataset(value: Dataset) -> dataset_pb2.Dataset:
    """The contract's Dataset."""
    current = ""
    if value.current_version_id is not None:
        current = version_name(value.namespace, value.name, value.current_version_id)
    return dataset_pb2.Dataset(
        name=value.resource_name,
        uid=str(value.id),
        description=value.description,
        labels=value.labels,
        state=f"DATASET_STATE_{value.state.value}",
        current_version=current,
        current_version_number=value.current_version_number or 0,
        rules=dataset_rules(value.rules),
        create_time=timestamp(value.create_time),
        update_time=timestamp(value.update_time),
        delete_time=timestamp(value.delete_time),
        etag=value.etag,
    )


def file_format(value: FileFormat) -> str:
    """The contract's name of a format (FILE_FORMAT_CSV, ...)."""
    return f"FILE_FORMAT_{value.value}"


def _issue(value: Issue) -> version_pb2.ValidationIssue:
    return version_pb2.ValidationIssue(code=value.code, message=value.message, line=value.line, column=value.column)


def column(value: ColumnInfo) -> version_pb2.Column:
    """The contract's Column."""
    return version_pb2.Column(name=value.name, type=value.type, nullable=value.nullable)


def storage_of(value: VersionFile) -> version_pb2.FileStorage:
    """Where a file's bytes are kept, as the contract says it."""
    if value.inline:
        return version_pb2.FILE_STORAGE_INLINE
    return version_pb2.FILE_STORAGE_EXTERNAL if value.external else version_pb2.FILE_STORAGE_OBJECT_STORE


def version_file(value: VersionFile, view: VersionView = VersionView.FULL) -> version_pb2.VersionFile:
    """The contract's VersionFile; with the FULL view, its columns and validation report too."""
    message = version_pb2.VersionFile(path=value.path, size_bytes=value.size, sha256=value.sha256,
                                      format=file_format(value.format), row_count=value.row_count,
                                      content_type=value.content_type,
                                      storage=storage_of(value))
    if value.rendition is not None:
        message.rendition.CopyFrom(version_pb2.Rendition(format=common_pb2.FILE_FORMAT_PARQUET,
                                                         size_bytes=value.rendition.size,
                                                         sha256=value.rendition.sha256))
    if view is VersionView.FULL:
        report = value.report
        message.columns.extend(column(c) for c in value.columns)
        message.report.CopyFrom(version_pb2.ValidationReport(
            format=file_format(report.format), detected_by=report.detected_by, row_count=report.row_count,
            warnings=[_issue(w) for w in report.warnings], errors=[_issue(e) for e in report.errors],
            arrow_schema=value.arrow_schema or b"", row_groups=report.row_groups, bytes_read=report.bytes_read))
    return message


def version(value: Version) -> version_pb2.Version:
    """The contract's Version (its files, each in full, when the model carries them)."""
    return version_pb2.Version(
        name=value.name, uid=str(value.id), dataset=value.dataset_name, number=value.number or 0,
        parent=value.parent_name, message=value.message, state=f"VERSION_STATE_{value.state.value}",
        failure=failure(value.failure), author=value.author, create_time=timestamp(value.create_time),
        ready_time=timestamp(value.ready_time), file_count=value.file_count, total_bytes=value.total_bytes,
        total_rows=value.total_rows, files=[version_file(f) for f in value.files], cloned_from=value.cloned_from)


def file_page(value: FilePage, view: VersionView) -> dataset_service_pb2.ListVersionFilesResponse:
    """The contract's ListVersionFilesResponse."""
    return dataset_service_pb2.ListVersionFilesResponse(files=[version_file(f, view) for f in value.files],
                                                        next_page_token=value.next_token, version=value.version.name)


def _schema_change(value: SchemaChange) -> dataset_service_pb2.SchemaChange:
    return dataset_service_pb2.SchemaChange(
        added=[column(c) for c in value.added], removed=[column(c) for c in value.removed],
        retyped=[dataset_service_pb2.ColumnTypeChange(name=c.name, base_type=c.base_type, target_type=c.target_type)
                 for c in value.retyped],
        base_row_count=value.base_row_count, target_row_count=value.target_row_count)


def file_change(value: FileChange, view: VersionView = VersionView.BASIC) -> dataset_service_pb2.FileChange:
    """The contract's FileChange, its files as `view` shows them."""
    return dataset_service_pb2.FileChange(
        path=value.path, kind=f"CHANGE_KIND_{value.kind.value}",
        base=version_file(value.base, view) if value.base is not None else None,
        target=version_file(value.target, view) if value.target is not None else None,
        schema_change=_schema_change(value.schema_change) if value.schema_change is not None else None)


def version_diff(value: VersionDiff, view: VersionView = VersionView.BASIC) -> dataset_service_pb2.DiffVersionsResponse:
    """The contract's DiffVersionsResponse."""
    return dataset_service_pb2.DiffVersionsResponse(changes=[file_change(c, view) for c in value.changes],
                                                    unchanged_count=value.unchanged_count,
                                                    next_page_token=value.next_token)


def row_diff(value: RowDiff) -> dataset_service_pb2.DiffRowsResponse:
    """The contract's DiffRowsResponse."""
    return dataset_service_pb2.DiffRowsResponse(
        added_count=value.added, removed_count=value.removed, changed_count=value.changed,
        unchanged_count=value.unchanged, added_rows=list(value.added_rows), removed_rows=list(value.removed_rows),
        changed_rows=[dataset_service_pb2.RowChange(base_row=c.base_row, target_row=c.target_row,
                                                    changed_columns=list(c.columns)) for c in value.changed_rows],
        compared_columns=list(value.compared_columns))


def preview(value: Preview) -> dataset_service_pb2.PreviewFileResponse:
    """The contract's PreviewFileResponse."""
    return dataset_service_pb2.PreviewFileResponse(
        arrow_ipc_stream=value.arrow_ipc, json_rows=list(value.json_rows), columns=[column(c) for c in value.columns],
        row_count=value.row_count, total_rows=value.total_rows)


def column_stats(value: ColumnStats) -> version_pb2.ColumnStats:
    """The contract's ColumnStats."""
    message = version_pb2.ColumnStats(
        name=value.name, type=value.type, null_count=value.null_count, min=value.min, max=value.max,
        distinct_estimate=value.distinct_estimate, source=value.source, count=value.count,
        quantiles=[version_pb2.Quantile(probability=p, value=v) for p, v in value.quantiles],
        top_values=[version_pb2.ValueCount(value=v, count=c) for v, c in value.top_values],
        histogram=[version_pb2.HistogramBucket(lower=b.lower, upper=b.upper, count=b.count) for b in value.histogram],
        distinct_exact=value.distinct_exact)
    if value.mean is not None:
        message.mean = value.mean
    if value.stddev is not None:
        message.stddev = value.stddev
    return message


def file_stats(value: VersionFile) -> dataset_service_pb2.GetFileStatsResponse:
    """The contract's GetFileStatsResponse: the statistics stored with a file at validation."""
    return dataset_service_pb2.GetFileStatsResponse(columns=[column_stats(s) for s in value.stats],
                                                    row_count=value.row_count)


def read_chunk(read: FileRead, offset: int, data: bytes) -> bytes:
    """One ReadFile message, encoded (server/api/wire.py: one copy of the data, where protobuf makes two)."""
    return wire.read_response(data, offset, read.file.size, read.file.sha256)


def duration_seconds(value: duration_pb2.Duration) -> float:
    """Seconds of a Duration (0 when unset)."""
    return value.ToNanoseconds() / 1e9


def download_url(value: DownloadUrl) -> dataset_service_pb2.GetDownloadUrlResponse:
    """The contract's GetDownloadUrlResponse."""
    return dataset_service_pb2.GetDownloadUrlResponse(url=value.url, expire_time=timestamp(value.expire_time))
