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
VERSION_STATE_UNSPECIFIED: VersionState
VERSION_STATE_PENDING: VersionState
VERSION_STATE_VALIDATING: VersionState
VERSION_STATE_PROMOTING: VersionState
VERSION_STATE_READY: VersionState
VERSION_STATE_FAILED: VersionState

class Version(_message.Message):
    __slots__ = ("name", "uid", "dataset", "number", "parent", "message", "state", "failure", "author", "create_time", "ready_time", "file_count", "total_bytes", "total_rows", "files")
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
    def __init__(self, name: _Optional[str] = ..., uid: _Optional[str] = ..., dataset: _Optional[str] = ..., number: _Optional[int] = ..., parent: _Optional[str] = ..., message: _Optional[str] = ..., state: _Optional[_Union[VersionState, str]] = ..., failure: _Optional[_Union[_common_pb2.Failure, _Mapping]] = ..., author: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ready_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., file_count: _Optional[int] = ..., total_bytes: _Optional[int] = ..., total_rows: _Optional[int] = ..., files: _Optional[_Iterable[_Union[VersionFile, _Mapping]]] = ...) -> None: ...

class VersionFile(_message.Message):
    __slots__ = ("path", "size_bytes", "sha256", "format", "columns", "row_count", "report", "content_type")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    path: str
    size_bytes: int
    sha256: str
    format: _common_pb2.FileFormat
    columns: _containers.RepeatedCompositeFieldContainer[Column]
    row_count: int
    report: ValidationReport
    content_type: str
    def __init__(self, path: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., format: _Optional[_Union[_common_pb2.FileFormat, str]] = ..., columns: _Optional[_Iterable[_Union[Column, _Mapping]]] = ..., row_count: _Optional[int] = ..., report: _Optional[_Union[ValidationReport, _Mapping]] = ..., content_type: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("name", "type", "null_count", "min", "max", "distinct_estimate", "source")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    NULL_COUNT_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    DISTINCT_ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    null_count: int
    min: str
    max: str
    distinct_estimate: int
    source: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., null_count: _Optional[int] = ..., min: _Optional[str] = ..., max: _Optional[str] = ..., distinct_estimate: _Optional[int] = ..., source: _Optional[str] = ...) -> None: ...
