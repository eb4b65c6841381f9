"""Conversions between domain models and contract messages."""

from __future__ import annotations

from datetime import datetime

from google.protobuf import timestamp_pb2
from google.rpc import code_pb2
from quarry.v1 import common_pb2, upload_pb2

from server.api.errors import code_for_kind
from server.domain.models import Failure, Upload


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    """A protobuf Timestamp, or None to leave the field unset."""
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


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
