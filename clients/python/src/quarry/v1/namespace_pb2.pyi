import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Namespace(_message.Message):
    __slots__ = ("name", "quota", "usage", "create_time", "update_time", "etag")
    NAME_FIELD_NUMBER: _ClassVar[int]
    QUOTA_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    quota: NamespaceQuota
    usage: NamespaceUsage
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    etag: str
    def __init__(self, name: _Optional[str] = ..., quota: _Optional[_Union[NamespaceQuota, _Mapping]] = ..., usage: _Optional[_Union[NamespaceUsage, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ...) -> None: ...

class NamespaceQuota(_message.Message):
    __slots__ = ("max_bytes", "max_open_uploads", "max_datasets", "requests_per_second")
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_OPEN_UPLOADS_FIELD_NUMBER: _ClassVar[int]
    MAX_DATASETS_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    max_bytes: int
    max_open_uploads: int
    max_datasets: int
    requests_per_second: float
    def __init__(self, max_bytes: _Optional[int] = ..., max_open_uploads: _Optional[int] = ..., max_datasets: _Optional[int] = ..., requests_per_second: _Optional[float] = ...) -> None: ...

class NamespaceUsage(_message.Message):
    __slots__ = ("stored_bytes", "open_uploads", "datasets")
    STORED_BYTES_FIELD_NUMBER: _ClassVar[int]
    OPEN_UPLOADS_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    stored_bytes: int
    open_uploads: int
    datasets: int
    def __init__(self, stored_bytes: _Optional[int] = ..., open_uploads: _Optional[int] = ..., datasets: _Optional[int] = ...) -> None: ...
