import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from quarry.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VersionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERSION_STATE_UNSPECIFIED: _ClassVar[VersionState]
    VERSION_STATE_PENDING: _ClassVar[VersionState]
    VERSION_STATE_VALIDATING: _ClassVar[VersionState]
    VERSION_STATE_PROMOTING: _ClassVar[VersionState]
    VERSION_STATE_READY: _ClassVar[VersionState]
    VERSION_STATE_FAILED: _ClassVar[VersionState]

class FileStorage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FILE_STORAGE_UNSPECIFIED: _ClassVar[FileStorage]
    FILE_STORAGE_OBJECT_STORE: _ClassVar[FileStorage]
    FILE_STORAGE_INLINE: _ClassVar[FileStorage]
    FILE_STORAGE_EXTERNAL: _ClassVar[FileStorage]
VERSION_STATE_UNSPECIFIED: VersionState
VERSION_STATE_PENDING: VersionState
VERSION_STATE_VALIDATING: VersionState
VERSION_STATE_PROMOTING: VersionState
VERSION_STATE_READY: VersionState
VERSION_STATE_FAILED: VersionState
FILE_STORAGE_UNSPECIFIED: FileStorage
FILE_STORAGE_OBJECT_STORE: FileStorage
FILE_STORAGE_INLINE: FileStorage
FILE_STORAGE_EXTERNAL: FileStorage

class Version(_message.Message):
    __slots__ = ("name", "uid", "dataset", "number", "parent", "message", "state", "failure", "author", "create_time", "ready_time", "file_count", "total_bytes", "total_rows", "files", "cloned_from")
    NAME_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    READY_TIME_FIELD_NUMBER: _ClassVar[int]
    FILE_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_ROWS_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    CLONED_FROM_FIELD_NUMBER: _ClassVar[int]
    name: str
    uid: str
    dataset: str
    number: int
    parent: str
    message: str
    state: VersionState
    failure: _common_pb2.Failure
    author: str
    create_time: _timestamp_pb2.Timestamp
    ready_time: _timestamp_pb2.Timestamp
    file_count: int
    total_bytes: int
    total_rows: int
    files: _containers.RepeatedCompositeFieldContainer[VersionFile]
    cloned_from: str
    def __init__(self, name: _Optional[str] = ..., uid: _Optional[str] = ..., dataset: _Optional[str] = ..., number: _Optional[int] = ..., parent: _Optional[str] = ..., message: _Optional[str] = ..., state: _Optional[_Union[VersionState, str]] = ..., failure: _Optional[_Union[_common_pb2.Failure, _Mapping]] = ..., author: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ready_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., file_count: _Optional[int] = ..., total_bytes: _Optional[int] = ..., total_rows: _Optional[int] = ..., files: _Optional[_Iterable[_Union[VersionFile, _Mapping]]] = ..., cloned_from: _Optional[str] = ...) -> None: ...

class VersionFile(_message.Message):
    __slots__ = ("path", "size_bytes", "sha256", "format", "columns", "row_count", "report", "content_type", "storage", "rendition")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    STORAGE_FIELD_NUMBER: _ClassVar[int]
    RENDITION_FIELD_NUMBER: _ClassVar[int]
    path: str
    size_bytes: int
    sha256: str
    format: _common_pb2.FileFormat
    columns: _containers.RepeatedCompositeFieldContainer[Column]
    row_count: int
    report: ValidationReport
    content_type: str
    storage: FileStorage
    rendition: Rendition
    def __init__(self, path: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., format: _Optional[_Union[_common_pb2.FileFormat, str]] = ..., columns: _Optional[_Iterable[_Union[Column, _Mapping]]] = ..., row_count: _Optional[int] = ..., report: _Optional[_Union[ValidationReport, _Mapping]] = ..., content_type: _Optional[str] = ..., storage: _Optional[_Union[FileStorage, str]] = ..., rendition: _Optional[_Union[Rendition, _Mapping]] = ...) -> None: ...

class Rendition(_message.Message):
    __slots__ = ("format", "size_bytes", "sha256")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    format: _common_pb2.FileFormat
    size_bytes: int
    sha256: str
    def __init__(self, format: _Optional[_Union[_common_pb2.FileFormat, str]] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ...) -> None: ...

class Column(_message.Message):
    __slots__ = ("name", "type", "nullable")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NULLABLE_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    nullable: bool
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., nullable: _Optional[bool] = ...) -> None: ...

class ValidationReport(_message.Message):
    __slots__ = ("format", "detected_by", "row_count", "warnings", "errors", "arrow_schema", "row_groups", "bytes_read")
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    DETECTED_BY_FIELD_NUMBER: _ClassVar[int]
    ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    ARROW_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    ROW_GROUPS_FIELD_NUMBER: _ClassVar[int]
    BYTES_READ_FIELD_NUMBER: _ClassVar[int]
    format: _common_pb2.FileFormat
    detected_by: str
    row_count: int
    warnings: _containers.RepeatedCompositeFieldContainer[ValidationIssue]
    errors: _containers.RepeatedCompositeFieldContainer[ValidationIssue]
    arrow_schema: bytes
    row_groups: int
    bytes_read: int
    def __init__(self, format: _Optional[_Union[_common_pb2.FileFormat, str]] = ..., detected_by: _Optional[str] = ..., row_count: _Optional[int] = ..., warnings: _Optional[_Iterable[_Union[ValidationIssue, _Mapping]]] = ..., errors: _Optional[_Iterable[_Union[ValidationIssue, _Mapping]]] = ..., arrow_schema: _Optional[bytes] = ..., row_groups: _Optional[int] = ..., bytes_read: _Optional[int] = ...) -> None: ...

class ValidationIssue(_message.Message):
    __slots__ = ("code", "message", "line", "column")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    line: int
    column: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., line: _Optional[int] = ..., column: _Optional[str] = ...) -> None: ...

class ColumnStats(_message.Message):
    __slots__ = ("name", "type", "null_count", "min", "max", "distinct_estimate", "source", "count", "mean", "stddev", "quantiles", "top_values", "histogram", "distinct_exact")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NULL_COUNT_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    DISTINCT_ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STDDEV_FIELD_NUMBER: _ClassVar[int]
    QUANTILES_FIELD_NUMBER: _ClassVar[int]
    TOP_VALUES_FIELD_NUMBER: _ClassVar[int]
    HISTOGRAM_FIELD_NUMBER: _ClassVar[int]
    DISTINCT_EXACT_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    null_count: int
    min: str
    max: str
    distinct_estimate: int
    source: str
    count: int
    mean: float
    stddev: float
    quantiles: _containers.RepeatedCompositeFieldContainer[Quantile]
    top_values: _containers.RepeatedCompositeFieldContainer[ValueCount]
    histogram: _containers.RepeatedCompositeFieldContainer[HistogramBucket]
    distinct_exact: bool
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., null_count: _Optional[int] = ..., min: _Optional[str] = ..., max: _Optional[str] = ..., distinct_estimate: _Optional[int] = ..., source: _Optional[str] = ..., count: _Optional[int] = ..., mean: _Optional[float] = ..., stddev: _Optional[float] = ..., quantiles: _Optional[_Iterable[_Union[Quantile, _Mapping]]] = ..., top_values: _Optional[_Iterable[_Union[ValueCount, _Mapping]]] = ..., histogram: _Optional[_Iterable[_Union[HistogramBucket, _Mapping]]] = ..., distinct_exact: _Optional[bool] = ...) -> None: ...

class Quantile(_message.Message):
    __slots__ = ("probability", "value")
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    probability: float
    value: float
    def __init__(self, probability: _Optional[float] = ..., value: _Optional[float] = ...) -> None: ...

class ValueCount(_message.Message):
    __slots__ = ("value", "count")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    value: str
    count: int
    def __init__(self, value: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class HistogramBucket(_message.Message):
    __slots__ = ("lower", "upper", "count")
    LOWER_FIELD_NUMBER: _ClassVar[int]
    UPPER_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    lower: float
    upper: float
    count: int
    def __init__(self, lower: _Optional[float] = ..., upper: _Optional[float] = ..., count: _Optional[int] = ...) -> None: ...
