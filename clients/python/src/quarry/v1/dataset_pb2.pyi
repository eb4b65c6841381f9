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

class DatasetState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATASET_STATE_UNSPECIFIED: _ClassVar[DatasetState]
    DATASET_STATE_DRAFT: _ClassVar[DatasetState]
    DATASET_STATE_ACTIVE: _ClassVar[DatasetState]
    DATASET_STATE_DELETED: _ClassVar[DatasetState]
DATASET_STATE_UNSPECIFIED: DatasetState
DATASET_STATE_DRAFT: DatasetState
DATASET_STATE_ACTIVE: DatasetState
DATASET_STATE_DELETED: DatasetState

class Dataset(_message.Message):
    __slots__ = ("name", "uid", "description", "labels", "state", "current_version", "current_version_number", "rules", "create_time", "update_time", "delete_time", "etag")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    CURRENT_VERSION_NUMBER_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DELETE_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    uid: str
    description: str
    labels: _containers.ScalarMap[str, str]
    state: DatasetState
    current_version: str
    current_version_number: int
    rules: DatasetRules
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    delete_time: _timestamp_pb2.Timestamp
    etag: str
    def __init__(self, name: _Optional[str] = ..., uid: _Optional[str] = ..., description: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., state: _Optional[_Union[DatasetState, str]] = ..., current_version: _Optional[str] = ..., current_version_number: _Optional[int] = ..., rules: _Optional[_Union[DatasetRules, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., delete_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ...) -> None: ...

class DatasetRules(_message.Message):
    __slots__ = ("max_file_bytes", "allowed_formats", "min_rows", "required_columns", "allow_breaking_schema_changes", "normalize_to_parquet")
    MAX_FILE_BYTES_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_FORMATS_FIELD_NUMBER: _ClassVar[int]
    MIN_ROWS_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    ALLOW_BREAKING_SCHEMA_CHANGES_FIELD_NUMBER: _ClassVar[int]
    NORMALIZE_TO_PARQUET_FIELD_NUMBER: _ClassVar[int]
    max_file_bytes: int
    allowed_formats: _containers.RepeatedScalarFieldContainer[_common_pb2.FileFormat]
    min_rows: int
    required_columns: _containers.RepeatedScalarFieldContainer[str]
    allow_breaking_schema_changes: bool
    normalize_to_parquet: bool
    def __init__(self, max_file_bytes: _Optional[int] = ..., allowed_formats: _Optional[_Iterable[_Union[_common_pb2.FileFormat, str]]] = ..., min_rows: _Optional[int] = ..., required_columns: _Optional[_Iterable[str]] = ..., allow_breaking_schema_changes: _Optional[bool] = ..., normalize_to_parquet: _Optional[bool] = ...) -> None: ...
