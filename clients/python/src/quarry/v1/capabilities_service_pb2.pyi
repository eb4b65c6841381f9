import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from quarry.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AuthMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUTH_MODE_UNSPECIFIED: _ClassVar[AuthMode]
    AUTH_MODE_TOKENS: _ClassVar[AuthMode]
    AUTH_MODE_NONE: _ClassVar[AuthMode]
AUTH_MODE_UNSPECIFIED: AuthMode
AUTH_MODE_TOKENS: AuthMode
AUTH_MODE_NONE: AuthMode

class GetCapabilitiesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetCapabilitiesResponse(_message.Message):
    __slots__ = ("server_version", "max_message_bytes", "max_chunk_bytes", "min_part_size_bytes", "max_part_size_bytes", "max_upload_bytes", "max_open_uploads", "upload_expiry", "checksum_algorithms", "formats", "max_page_size", "max_preview_rows", "download_urls", "storage_kind", "auth_mode", "tls_required", "client_certificate_required", "max_download_url_ttl", "min_api_version", "max_api_version", "max_path_length", "max_labels", "max_label_key_length", "max_label_value_length", "max_changes_per_commit", "max_parts", "max_inline_bytes")
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    MIN_PART_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_PART_SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_UPLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_OPEN_UPLOADS_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_EXPIRY_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_ALGORITHMS_FIELD_NUMBER: _ClassVar[int]
    FORMATS_FIELD_NUMBER: _ClassVar[int]
    MAX_PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_PREVIEW_ROWS_FIELD_NUMBER: _ClassVar[int]
    DOWNLOAD_URLS_FIELD_NUMBER: _ClassVar[int]
    STORAGE_KIND_FIELD_NUMBER: _ClassVar[int]
    AUTH_MODE_FIELD_NUMBER: _ClassVar[int]
    TLS_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    CLIENT_CERTIFICATE_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    MAX_DOWNLOAD_URL_TTL_FIELD_NUMBER: _ClassVar[int]
    MIN_API_VERSION_FIELD_NUMBER: _ClassVar[int]
    MAX_API_VERSION_FIELD_NUMBER: _ClassVar[int]
    MAX_PATH_LENGTH_FIELD_NUMBER: _ClassVar[int]
    MAX_LABELS_FIELD_NUMBER: _ClassVar[int]
    MAX_LABEL_KEY_LENGTH_FIELD_NUMBER: _ClassVar[int]
    MAX_LABEL_VALUE_LENGTH_FIELD_NUMBER: _ClassVar[int]
    MAX_CHANGES_PER_COMMIT_FIELD_NUMBER: _ClassVar[int]
    MAX_PARTS_FIELD_NUMBER: _ClassVar[int]
    MAX_INLINE_BYTES_FIELD_NUMBER: _ClassVar[int]
    server_version: str
    max_message_bytes: int
    max_chunk_bytes: int
    min_part_size_bytes: int
    max_part_size_bytes: int
    max_upload_bytes: int
    max_open_uploads: int
    upload_expiry: _duration_pb2.Duration
    checksum_algorithms: _containers.RepeatedScalarFieldContainer[_common_pb2.ChecksumAlgorithm]
    formats: _containers.RepeatedScalarFieldContainer[_common_pb2.FileFormat]
    max_page_size: int
    max_preview_rows: int
    download_urls: bool
    storage_kind: str
    auth_mode: AuthMode
    tls_required: bool
    client_certificate_required: bool
    max_download_url_ttl: _duration_pb2.Duration
    min_api_version: str
    max_api_version: str
    max_path_length: int
    max_labels: int
    max_label_key_length: int
    max_label_value_length: int
    max_changes_per_commit: int
    max_parts: int
    max_inline_bytes: int
    def __init__(self, server_version: _Optional[str] = ..., max_message_bytes: _Optional[int] = ..., max_chunk_bytes: _Optional[int] = ..., min_part_size_bytes: _Optional[int] = ..., max_part_size_bytes: _Optional[int] = ..., max_upload_bytes: _Optional[int] = ..., max_open_uploads: _Optional[int] = ..., upload_expiry: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., checksum_algorithms: _Optional[_Iterable[_Union[_common_pb2.ChecksumAlgorithm, str]]] = ..., formats: _Optional[_Iterable[_Union[_common_pb2.FileFormat, str]]] = ..., max_page_size: _Optional[int] = ..., max_preview_rows: _Optional[int] = ..., download_urls: _Optional[bool] = ..., storage_kind: _Optional[str] = ..., auth_mode: _Optional[_Union[AuthMode, str]] = ..., tls_required: _Optional[bool] = ..., client_certificate_required: _Optional[bool] = ..., max_download_url_ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., min_api_version: _Optional[str] = ..., max_api_version: _Optional[str] = ..., max_path_length: _Optional[int] = ..., max_labels: _Optional[int] = ..., max_label_key_length: _Optional[int] = ..., max_label_value_length: _Optional[int] = ..., max_changes_per_commit: _Optional[int] = ..., max_parts: _Optional[int] = ..., max_inline_bytes: _Optional[int] = ...) -> None: ...
