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

class UploadState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UPLOAD_STATE_UNSPECIFIED: _ClassVar[UploadState]
    UPLOAD_STATE_OPEN: _ClassVar[UploadState]
    UPLOAD_STATE_STAGED: _ClassVar[UploadState]
    UPLOAD_STATE_VALIDATING: _ClassVar[UploadState]
    UPLOAD_STATE_VALIDATED: _ClassVar[UploadState]
    UPLOAD_STATE_PROMOTED: _ClassVar[UploadState]
    UPLOAD_STATE_FAILED: _ClassVar[UploadState]
    UPLOAD_STATE_CANCELLED: _ClassVar[UploadState]
    UPLOAD_STATE_EXPIRED: _ClassVar[UploadState]
UPLOAD_STATE_UNSPECIFIED: UploadState
UPLOAD_STATE_OPEN: UploadState
UPLOAD_STATE_STAGED: UploadState
UPLOAD_STATE_VALIDATING: UploadState
UPLOAD_STATE_VALIDATED: UploadState
UPLOAD_STATE_PROMOTED: UploadState
UPLOAD_STATE_FAILED: UploadState
UPLOAD_STATE_CANCELLED: UploadState
UPLOAD_STATE_EXPIRED: UploadState

class Upload(_message.Message):
    __slots__ = ("name", "uid", "dataset", "path", "declared_size_bytes", "declared_sha256", "content_type", "auto_commit", "commit_message", "state", "part_size_bytes", "committed_bytes", "parts", "size_bytes", "sha256", "failure", "version", "expire_time", "create_time", "update_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    DECLARED_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    DECLARED_SHA256_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    AUTO_COMMIT_FIELD_NUMBER: _ClassVar[int]
    COMMIT_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PART_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_BYTES_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    uid: str
    dataset: str
    path: str
    declared_size_bytes: int
    declared_sha256: str
    content_type: str
    auto_commit: bool
    commit_message: str
    state: UploadState
    part_size_bytes: int
    committed_bytes: int
    parts: _containers.RepeatedCompositeFieldContainer[UploadPart]
    size_bytes: int
    sha256: str
    failure: _common_pb2.Failure
    version: str
    expire_time: _timestamp_pb2.Timestamp
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., uid: _Optional[str] = ..., dataset: _Optional[str] = ..., path: _Optional[str] = ..., declared_size_bytes: _Optional[int] = ..., declared_sha256: _Optional[str] = ..., content_type: _Optional[str] = ..., auto_commit: _Optional[bool] = ..., commit_message: _Optional[str] = ..., state: _Optional[_Union[UploadState, str]] = ..., part_size_bytes: _Optional[int] = ..., committed_bytes: _Optional[int] = ..., parts: _Optional[_Iterable[_Union[UploadPart, _Mapping]]] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., failure: _Optional[_Union[_common_pb2.Failure, _Mapping]] = ..., version: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class UploadPart(_message.Message):
    __slots__ = ("part_number", "offset", "size_bytes", "crc32c")
    PART_NUMBER_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CRC32C_FIELD_NUMBER: _ClassVar[int]
    part_number: int
    offset: int
    size_bytes: int
    crc32c: int
    def __init__(self, part_number: _Optional[int] = ..., offset: _Optional[int] = ..., size_bytes: _Optional[int] = ..., crc32c: _Optional[int] = ...) -> None: ...
