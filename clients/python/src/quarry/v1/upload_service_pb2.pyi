from quarry.v1 import upload_pb2 as _upload_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateUploadRequest(_message.Message):
    __slots__ = ("parent", "upload", "request_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    parent: str
    upload: _upload_pb2.Upload
    request_id: str
    def __init__(self, parent: _Optional[str] = ..., upload: _Optional[_Union[_upload_pb2.Upload, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class CreateUploadResponse(_message.Message):
    __slots__ = ("upload",)
    UPLOAD_FIELD_NUMBER: _ClassVar[int]
    upload: _upload_pb2.Upload
    def __init__(self, upload: _Optional[_Union[_upload_pb2.Upload, _Mapping]] = ...) -> None: ...

class UploadRequest(_message.Message):
    __slots__ = ("header", "chunk", "finish")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    FINISH_FIELD_NUMBER: _ClassVar[int]
    header: UploadHeader
    chunk: UploadChunk
    finish: UploadFinish
    def __init__(self, header: _Optional[_Union[UploadHeader, _Mapping]] = ..., chunk: _Optional[_Union[UploadChunk, _Mapping]] = ..., finish: _Optional[_Union[UploadFinish, _Mapping]] = ...) -> None: ...

class UploadHeader(_message.Message):
    __slots__ = ("create", "upload", "write_offset")
    CREATE_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_FIELD_NUMBER: _ClassVar[int]
    WRITE_OFFSET_FIELD_NUMBER: _ClassVar[int]
    create: CreateUploadRequest
    upload: str
    write_offset: int
    def __init__(self, create: _Optional[_Union[CreateUploadRequest, _Mapping]] = ..., upload: _Optional[str] = ..., write_offset: _Optional[int] = ...) -> None: ...

class UploadChunk(_message.Message):
    __slots__ = ("data", "crc32c")
    DATA_FIELD_NUMBER: _ClassVar[int]
    CRC32C_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    crc32c: int
    def __init__(self, data: _Optional[bytes] = ..., crc32c: _Optional[int] = ...) -> None: ...

class UploadFinish(_message.Message):
    __slots__ = ("sha256", "keep_open")
    SHA256_FIELD_NUMBER: _ClassVar[int]
    KEEP_OPEN_FIELD_NUMBER: _ClassVar[int]
    sha256: str
    keep_open: bool
    def __init__(self, sha256: _Optional[str] = ..., keep_open: _Optional[bool] = ...) -> None: ...

class UploadResponse(_message.Message):
    __slots__ = ("upload", "committed_by_stream")
    UPLOAD_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_BY_STREAM_FIELD_NUMBER: _ClassVar[int]
    upload: _upload_pb2.Upload
    committed_by_stream: int
    def __init__(self, upload: _Optional[_Union[_upload_pb2.Upload, _Mapping]] = ..., committed_by_stream: _Optional[int] = ...) -> None: ...

class GetUploadRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetUploadResponse(_message.Message):
    __slots__ = ("upload",)
    UPLOAD_FIELD_NUMBER: _ClassVar[int]
    upload: _upload_pb2.Upload
    def __init__(self, upload: _Optional[_Union[_upload_pb2.Upload, _Mapping]] = ...) -> None: ...

class ListUploadsRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token", "filter")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    filter: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., filter: _Optional[str] = ...) -> None: ...

class ListUploadsResponse(_message.Message):
    __slots__ = ("uploads", "next_page_token")
    UPLOADS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    uploads: _containers.RepeatedCompositeFieldContainer[_upload_pb2.Upload]
    next_page_token: str
    def __init__(self, uploads: _Optional[_Iterable[_Union[_upload_pb2.Upload, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CompleteUploadRequest(_message.Message):
    __slots__ = ("name", "sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    sha256: str
    def __init__(self, name: _Optional[str] = ..., sha256: _Optional[str] = ...) -> None: ...

class CompleteUploadResponse(_message.Message):
    __slots__ = ("upload",)
    UPLOAD_FIELD_NUMBER: _ClassVar[int]
    upload: _upload_pb2.Upload
    def __init__(self, upload: _Optional[_Union[_upload_pb2.Upload, _Mapping]] = ...) -> None: ...

class CancelUploadRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class CancelUploadResponse(_message.Message):
    __slots__ = ("upload",)
    UPLOAD_FIELD_NUMBER: _ClassVar[int]
    upload: _upload_pb2.Upload
    def __init__(self, upload: _Optional[_Union[_upload_pb2.Upload, _Mapping]] = ...) -> None: ...

class RetryUploadRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RetryUploadResponse(_message.Message):
    __slots__ = ("upload",)
    UPLOAD_FIELD_NUMBER: _ClassVar[int]
    upload: _upload_pb2.Upload
    def __init__(self, upload: _Optional[_Union[_upload_pb2.Upload, _Mapping]] = ...) -> None: ...

class WatchUploadRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class WatchUploadResponse(_message.Message):
    __slots__ = ("upload",)
    UPLOAD_FIELD_NUMBER: _ClassVar[int]
    upload: _upload_pb2.Upload
    def __init__(self, upload: _Optional[_Union[_upload_pb2.Upload, _Mapping]] = ...) -> None: ...
