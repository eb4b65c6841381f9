import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from quarry.v1 import common_pb2 as _common_pb2
from quarry.v1 import dataset_pb2 as _dataset_pb2
from quarry.v1 import version_pb2 as _version_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VersionView(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERSION_VIEW_UNSPECIFIED: _ClassVar[VersionView]
    VERSION_VIEW_BASIC: _ClassVar[VersionView]
    VERSION_VIEW_FULL: _ClassVar[VersionView]

class ChangeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANGE_KIND_UNSPECIFIED: _ClassVar[ChangeKind]
    CHANGE_KIND_ADDED: _ClassVar[ChangeKind]
    CHANGE_KIND_REMOVED: _ClassVar[ChangeKind]
    CHANGE_KIND_MODIFIED: _ClassVar[ChangeKind]
VERSION_VIEW_UNSPECIFIED: VersionView
VERSION_VIEW_BASIC: VersionView
VERSION_VIEW_FULL: VersionView
CHANGE_KIND_UNSPECIFIED: ChangeKind
CHANGE_KIND_ADDED: ChangeKind
CHANGE_KIND_REMOVED: ChangeKind
CHANGE_KIND_MODIFIED: ChangeKind

class CreateDatasetRequest(_message.Message):
    __slots__ = ("parent", "dataset_id", "dataset", "request_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    parent: str
    dataset_id: str
    dataset: _dataset_pb2.Dataset
    request_id: str
    def __init__(self, parent: _Optional[str] = ..., dataset_id: _Optional[str] = ..., dataset: _Optional[_Union[_dataset_pb2.Dataset, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class CreateDatasetResponse(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: _dataset_pb2.Dataset
    def __init__(self, dataset: _Optional[_Union[_dataset_pb2.Dataset, _Mapping]] = ...) -> None: ...

class GetDatasetRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetDatasetResponse(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: _dataset_pb2.Dataset
    def __init__(self, dataset: _Optional[_Union[_dataset_pb2.Dataset, _Mapping]] = ...) -> None: ...

class ListDatasetsRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token", "filter", "order_by", "show_deleted")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    SHOW_DELETED_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    filter: str
    order_by: str
    show_deleted: bool
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., filter: _Optional[str] = ..., order_by: _Optional[str] = ..., show_deleted: _Optional[bool] = ...) -> None: ...

class ListDatasetsResponse(_message.Message):
    __slots__ = ("datasets", "next_page_token")
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[_dataset_pb2.Dataset]
    next_page_token: str
    def __init__(self, datasets: _Optional[_Iterable[_Union[_dataset_pb2.Dataset, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateDatasetRequest(_message.Message):
    __slots__ = ("dataset", "update_mask")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    dataset: _dataset_pb2.Dataset
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, dataset: _Optional[_Union[_dataset_pb2.Dataset, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UpdateDatasetResponse(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: _dataset_pb2.Dataset
    def __init__(self, dataset: _Optional[_Union[_dataset_pb2.Dataset, _Mapping]] = ...) -> None: ...

class DeleteDatasetRequest(_message.Message):
    __slots__ = ("name", "etag")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    etag: str
    def __init__(self, name: _Optional[str] = ..., etag: _Optional[str] = ...) -> None: ...

class DeleteDatasetResponse(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: _dataset_pb2.Dataset
    def __init__(self, dataset: _Optional[_Union[_dataset_pb2.Dataset, _Mapping]] = ...) -> None: ...

class ListVersionsRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListVersionsResponse(_message.Message):
    __slots__ = ("versions", "next_page_token")
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[_version_pb2.Version]
    next_page_token: str
    def __init__(self, versions: _Optional[_Iterable[_Union[_version_pb2.Version, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetVersionRequest(_message.Message):
    __slots__ = ("name", "view")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    name: str
    view: VersionView
    def __init__(self, name: _Optional[str] = ..., view: _Optional[_Union[VersionView, str]] = ...) -> None: ...

class GetVersionResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: _version_pb2.Version
    def __init__(self, version: _Optional[_Union[_version_pb2.Version, _Mapping]] = ...) -> None: ...

class ListVersionFilesRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token", "path_prefix", "formats", "view")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    PATH_PREFIX_FIELD_NUMBER: _ClassVar[int]
    FORMATS_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    path_prefix: str
    formats: _containers.RepeatedScalarFieldContainer[_common_pb2.FileFormat]
    view: VersionView
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., path_prefix: _Optional[str] = ..., formats: _Optional[_Iterable[_Union[_common_pb2.FileFormat, str]]] = ..., view: _Optional[_Union[VersionView, str]] = ...) -> None: ...

class ListVersionFilesResponse(_message.Message):
    __slots__ = ("files", "next_page_token", "version")
    FILES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    files: _containers.RepeatedCompositeFieldContainer[_version_pb2.VersionFile]
    next_page_token: str
    version: str
    def __init__(self, files: _Optional[_Iterable[_Union[_version_pb2.VersionFile, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class CommitVersionRequest(_message.Message):
    __slots__ = ("parent", "base_version", "uploads", "delete_paths", "message", "request_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    BASE_VERSION_FIELD_NUMBER: _ClassVar[int]
    UPLOADS_FIELD_NUMBER: _ClassVar[int]
    DELETE_PATHS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    parent: str
    base_version: str
    uploads: _containers.RepeatedScalarFieldContainer[str]
    delete_paths: _containers.RepeatedScalarFieldContainer[str]
    message: str
    request_id: str
    def __init__(self, parent: _Optional[str] = ..., base_version: _Optional[str] = ..., uploads: _Optional[_Iterable[str]] = ..., delete_paths: _Optional[_Iterable[str]] = ..., message: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class CommitVersionResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: _version_pb2.Version
    def __init__(self, version: _Optional[_Union[_version_pb2.Version, _Mapping]] = ...) -> None: ...

class WatchVersionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class WatchVersionResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: _version_pb2.Version
    def __init__(self, version: _Optional[_Union[_version_pb2.Version, _Mapping]] = ...) -> None: ...

class DiffVersionsRequest(_message.Message):
    __slots__ = ("base_version", "target_version", "view", "page_size", "page_token")
    BASE_VERSION_FIELD_NUMBER: _ClassVar[int]
    TARGET_VERSION_FIELD_NUMBER: _ClassVar[int]
    VIEW_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    base_version: str
    target_version: str
    view: VersionView
    page_size: int
    page_token: str
    def __init__(self, base_version: _Optional[str] = ..., target_version: _Optional[str] = ..., view: _Optional[_Union[VersionView, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class DiffVersionsResponse(_message.Message):
    __slots__ = ("changes", "unchanged_count", "next_page_token")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_COUNT_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[FileChange]
    unchanged_count: int
    next_page_token: str
    def __init__(self, changes: _Optional[_Iterable[_Union[FileChange, _Mapping]]] = ..., unchanged_count: _Optional[int] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DiffRowsRequest(_message.Message):
    __slots__ = ("base_version", "target_version", "path", "key_columns", "sample_rows")
    BASE_VERSION_FIELD_NUMBER: _ClassVar[int]
    TARGET_VERSION_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    KEY_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_ROWS_FIELD_NUMBER: _ClassVar[int]
    base_version: str
    target_version: str
    path: str
    key_columns: _containers.RepeatedScalarFieldContainer[str]
    sample_rows: int
    def __init__(self, base_version: _Optional[str] = ..., target_version: _Optional[str] = ..., path: _Optional[str] = ..., key_columns: _Optional[_Iterable[str]] = ..., sample_rows: _Optional[int] = ...) -> None: ...

class DiffRowsResponse(_message.Message):
    __slots__ = ("added_count", "removed_count", "changed_count", "unchanged_count", "added_rows", "removed_rows", "changed_rows", "compared_columns")
    ADDED_COUNT_FIELD_NUMBER: _ClassVar[int]
    REMOVED_COUNT_FIELD_NUMBER: _ClassVar[int]
    CHANGED_COUNT_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_COUNT_FIELD_NUMBER: _ClassVar[int]
    ADDED_ROWS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_ROWS_FIELD_NUMBER: _ClassVar[int]
    CHANGED_ROWS_FIELD_NUMBER: _ClassVar[int]
    COMPARED_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    added_count: int
    removed_count: int
    changed_count: int
    unchanged_count: int
    added_rows: _containers.RepeatedScalarFieldContainer[str]
    removed_rows: _containers.RepeatedScalarFieldContainer[str]
    changed_rows: _containers.RepeatedCompositeFieldContainer[RowChange]
    compared_columns: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, added_count: _Optional[int] = ..., removed_count: _Optional[int] = ..., changed_count: _Optional[int] = ..., unchanged_count: _Optional[int] = ..., added_rows: _Optional[_Iterable[str]] = ..., removed_rows: _Optional[_Iterable[str]] = ..., changed_rows: _Optional[_Iterable[_Union[RowChange, _Mapping]]] = ..., compared_columns: _Optional[_Iterable[str]] = ...) -> None: ...

class RowChange(_message.Message):
    __slots__ = ("base_row", "target_row", "changed_columns")
    BASE_ROW_FIELD_NUMBER: _ClassVar[int]
    TARGET_ROW_FIELD_NUMBER: _ClassVar[int]
    CHANGED_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    base_row: str
    target_row: str
    changed_columns: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, base_row: _Optional[str] = ..., target_row: _Optional[str] = ..., changed_columns: _Optional[_Iterable[str]] = ...) -> None: ...

class FileChange(_message.Message):
    __slots__ = ("path", "kind", "base", "target", "schema_change")
    PATH_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    BASE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_CHANGE_FIELD_NUMBER: _ClassVar[int]
    path: str
    kind: ChangeKind
    base: _version_pb2.VersionFile
    target: _version_pb2.VersionFile
    schema_change: SchemaChange
    def __init__(self, path: _Optional[str] = ..., kind: _Optional[_Union[ChangeKind, str]] = ..., base: _Optional[_Union[_version_pb2.VersionFile, _Mapping]] = ..., target: _Optional[_Union[_version_pb2.VersionFile, _Mapping]] = ..., schema_change: _Optional[_Union[SchemaChange, _Mapping]] = ...) -> None: ...

class SchemaChange(_message.Message):
    __slots__ = ("added", "removed", "retyped", "base_row_count", "target_row_count")
    ADDED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    RETYPED_FIELD_NUMBER: _ClassVar[int]
    BASE_ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    TARGET_ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    added: _containers.RepeatedCompositeFieldContainer[_version_pb2.Column]
    removed: _containers.RepeatedCompositeFieldContainer[_version_pb2.Column]
    retyped: _containers.RepeatedCompositeFieldContainer[ColumnTypeChange]
    base_row_count: int
    target_row_count: int
    def __init__(self, added: _Optional[_Iterable[_Union[_version_pb2.Column, _Mapping]]] = ..., removed: _Optional[_Iterable[_Union[_version_pb2.Column, _Mapping]]] = ..., retyped: _Optional[_Iterable[_Union[ColumnTypeChange, _Mapping]]] = ..., base_row_count: _Optional[int] = ..., target_row_count: _Optional[int] = ...) -> None: ...

class ColumnTypeChange(_message.Message):
    __slots__ = ("name", "base_type", "target_type")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BASE_TYPE_FIELD_NUMBER: _ClassVar[int]
    TARGET_TYPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    base_type: str
    target_type: str
    def __init__(self, name: _Optional[str] = ..., base_type: _Optional[str] = ..., target_type: _Optional[str] = ...) -> None: ...

class PreviewFileRequest(_message.Message):
    __slots__ = ("version", "path", "row_limit")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    ROW_LIMIT_FIELD_NUMBER: _ClassVar[int]
    version: str
    path: str
    row_limit: int
    def __init__(self, version: _Optional[str] = ..., path: _Optional[str] = ..., row_limit: _Optional[int] = ...) -> None: ...

class PreviewFileResponse(_message.Message):
    __slots__ = ("arrow_ipc_stream", "json_rows", "columns", "row_count", "total_rows")
    ARROW_IPC_STREAM_FIELD_NUMBER: _ClassVar[int]
    JSON_ROWS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_ROWS_FIELD_NUMBER: _ClassVar[int]
    arrow_ipc_stream: bytes
    json_rows: _containers.RepeatedScalarFieldContainer[str]
    columns: _containers.RepeatedCompositeFieldContainer[_version_pb2.Column]
    row_count: int
    total_rows: int
    def __init__(self, arrow_ipc_stream: _Optional[bytes] = ..., json_rows: _Optional[_Iterable[str]] = ..., columns: _Optional[_Iterable[_Union[_version_pb2.Column, _Mapping]]] = ..., row_count: _Optional[int] = ..., total_rows: _Optional[int] = ...) -> None: ...

class GetFileStatsRequest(_message.Message):
    __slots__ = ("version", "path")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    version: str
    path: str
    def __init__(self, version: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class GetFileStatsResponse(_message.Message):
    __slots__ = ("columns", "row_count")
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    columns: _containers.RepeatedCompositeFieldContainer[_version_pb2.ColumnStats]
    row_count: int
    def __init__(self, columns: _Optional[_Iterable[_Union[_version_pb2.ColumnStats, _Mapping]]] = ..., row_count: _Optional[int] = ...) -> None: ...

class ReadFileRequest(_message.Message):
    __slots__ = ("version", "path", "offset", "limit", "rendition")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    RENDITION_FIELD_NUMBER: _ClassVar[int]
    version: str
    path: str
    offset: int
    limit: int
    rendition: bool
    def __init__(self, version: _Optional[str] = ..., path: _Optional[str] = ..., offset: _Optional[int] = ..., limit: _Optional[int] = ..., rendition: _Optional[bool] = ...) -> None: ...

class ReadFileResponse(_message.Message):
    __slots__ = ("data", "offset", "file_size_bytes", "sha256")
    DATA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    FILE_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    offset: int
    file_size_bytes: int
    sha256: str
    def __init__(self, data: _Optional[bytes] = ..., offset: _Optional[int] = ..., file_size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class GetDownloadUrlRequest(_message.Message):
    __slots__ = ("version", "path", "ttl")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    version: str
    path: str
    ttl: _duration_pb2.Duration
    def __init__(self, version: _Optional[str] = ..., path: _Optional[str] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class GetDownloadUrlResponse(_message.Message):
    __slots__ = ("url", "expire_time")
    URL_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    url: str
    expire_time: _timestamp_pb2.Timestamp
    def __init__(self, url: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CloneDatasetRequest(_message.Message):
    __slots__ = ("source", "parent", "dataset_id", "message", "request_id")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    source: str
    parent: str
    dataset_id: str
    message: str
    request_id: str
    def __init__(self, source: _Optional[str] = ..., parent: _Optional[str] = ..., dataset_id: _Optional[str] = ..., message: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class CloneDatasetResponse(_message.Message):
    __slots__ = ("dataset", "version")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    dataset: _dataset_pb2.Dataset
    version: _version_pb2.Version
    def __init__(self, dataset: _Optional[_Union[_dataset_pb2.Dataset, _Mapping]] = ..., version: _Optional[_Union[_version_pb2.Version, _Mapping]] = ...) -> None: ...

class UndeleteDatasetRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class UndeleteDatasetResponse(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: _dataset_pb2.Dataset
    def __init__(self, dataset: _Optional[_Union[_dataset_pb2.Dataset, _Mapping]] = ...) -> None: ...

class WriteFileRequest(_message.Message):
    __slots__ = ("parent", "path", "content", "content_type", "message", "base_version", "request_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    BASE_VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    parent: str
    path: str
    content: bytes
    content_type: str
    message: str
    base_version: str
    request_id: str
    def __init__(self, parent: _Optional[str] = ..., path: _Optional[str] = ..., content: _Optional[bytes] = ..., content_type: _Optional[str] = ..., message: _Optional[str] = ..., base_version: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class WriteFileResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: _version_pb2.Version
    def __init__(self, version: _Optional[_Union[_version_pb2.Version, _Mapping]] = ...) -> None: ...

class RegisterFilesRequest(_message.Message):
    __slots__ = ("parent", "source_uri", "include", "exclude", "copy", "path_prefix", "message", "request_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_URI_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_FIELD_NUMBER: _ClassVar[int]
    COPY_FIELD_NUMBER: _ClassVar[int]
    PATH_PREFIX_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    parent: str
    source_uri: str
    include: _containers.RepeatedScalarFieldContainer[str]
    exclude: _containers.RepeatedScalarFieldContainer[str]
    copy: bool
    path_prefix: str
    message: str
    request_id: str
    def __init__(self, parent: _Optional[str] = ..., source_uri: _Optional[str] = ..., include: _Optional[_Iterable[str]] = ..., exclude: _Optional[_Iterable[str]] = ..., copy: _Optional[bool] = ..., path_prefix: _Optional[str] = ..., message: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class RegisterFilesResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: _version_pb2.Version
    def __init__(self, version: _Optional[_Union[_version_pb2.Version, _Mapping]] = ...) -> None: ...
