"""The one table from domain errors to gRPC status codes, with google.rpc error details.

`status_for(exc)` maps the exception's kind (inherited down the error tree) through `STATUS_BY_KIND`.
Every status carries an `ErrorInfo` whose `reason` is the error's stable reason; bad requests add
`BadRequest` field violations, a namespace quota adds `QuotaFailure` naming it, and retryable errors (and a
rate limit) add `RetryInfo`. An exception that is not a QuarryError
becomes INTERNAL with a generic message; its detail goes to the log only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from server.model import errors

log = logging.getLogger(__name__)

# The ErrorInfo domain (AIP-193: the service's name); proto/quarry/v1/error_reason.proto lists the reasons.
DOMAIN = "quarry.dev"
# The status travels in trailers, which clients cap (grpc: 8 KiB by default); the message appears twice in them
# (grpc-message and the google.rpc.Status), so every text is clipped, in bytes, well below that.
MAX_MESSAGE = 1000
MAX_DESCRIPTION = 500
MAX_METADATA_VALUE = 200
MAX_VIOLATIONS = 5

STATUS_BY_KIND: dict[errors.ErrorKind, grpc.StatusCode] = {
    errors.ErrorKind.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    errors.ErrorKind.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    errors.ErrorKind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    errors.ErrorKind.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    errors.ErrorKind.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    errors.ErrorKind.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    errors.ErrorKind.OUT_OF_RANGE: grpc.StatusCode.OUT_OF_RANGE,
    errors.ErrorKind.DATA_LOSS: grpc.StatusCode.DATA_LOSS,
    errors.ErrorKind.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.ErrorKind.ABORTED: grpc.StatusCode.ABORTED,
    errors.ErrorKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    errors.ErrorKind.NOT_SUPPORTED: grpc.StatusCode.UNIMPLEMENTED,
    errors.ErrorKind.INTERNAL: grpc.StatusCode.INTERNAL,
}


@dataclass(frozen=True)
class RpcStatus:
    """What to abort a call with."""

    code: grpc.StatusCode
    message: str
    details: bytes

    @property
    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        """The `grpc-status-details-bin` trailer carrying the google.rpc.Status."""
        return (("grpc-status-details-bin", self.details),)


def code_for(exc: errors.QuarryError) -> grpc.StatusCode:
    """The status code of a domain error: that of its kind (which subclasses inherit)."""
    return code_for_kind(exc.kind)


def code_for_kind(kind: errors.ErrorKind) -> grpc.StatusCode:
    """The status code of an error kind (e.g. a stored Failure's)."""
    return STATUS_BY_KIND.get(kind, grpc.StatusCode.INTERNAL)


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def status_for(exc: BaseException) -> RpcStatus:
    """The gRPC status (code, message, rich details) for any exception a handler raised."""
    if isinstance(exc, NotImplementedError):
        # A generated base class's method nobody overrode (e.g. grpc's aio Health.List): UNIMPLEMENTED, not a crash.
        exc = errors.NotSupported("this method is not implemented by this server", reason="NOT_IMPLEMENTED")
    if not isinstance(exc, errors.QuarryError):
        log.error("unexpected error in handler", exc_info=exc)
        exc = errors.Internal("internal error; see the server log")
    elif isinstance(exc, errors.Internal):
        log.error("internal error: %s", exc.message, exc_info=exc)
        exc = errors.Internal("internal error; see the server log", reason=exc.reason)
    code = code_for(exc)
    message = _clip(exc.message, MAX_MESSAGE)
    details = [_pack(error_details_pb2.ErrorInfo(reason=exc.reason, domain=DOMAIN, metadata={
        key: _clip(value, MAX_METADATA_VALUE) for key, value in exc.metadata.items()}))]
    if exc.violations:
        details.append(_pack(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=_clip(v.field, MAX_METADATA_VALUE),
                                                        description=_clip(v.description, MAX_DESCRIPTION))
            for v in exc.violations[:MAX_VIOLATIONS]])))
    if isinstance(exc, errors.QuotaExceeded):
        details.append(_pack(error_details_pb2.QuotaFailure(violations=[error_details_pb2.QuotaFailure.Violation(
            subject=exc.subject, description=exc.message, quota_id=exc.quota, quota_value=exc.limit)])))
    if exc.retryable or exc.retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int((exc.retry_after or 1.0) * 1e9))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message, details=details)
    return RpcStatus(code, message, status.SerializeToString())


def _clip(text: str, limit: int) -> str:
    """At most `limit` bytes of UTF-8: a message quoting a huge input must still fit the client's metadata limit
    (grpc-message percent-encodes every byte that is not printable ASCII, tripling it)."""
    encoded = text.encode()
    if len(encoded) <= limit:
        return text
    return encoded[:limit - 3].decode(errors="ignore") + "…"
