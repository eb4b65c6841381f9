"""The one table from domain errors to gRPC status codes, with google.rpc error details.

`status_for(exc)` walks the exception's MRO to the first kind in `STATUS_BY_ERROR`. Every status carries
an `ErrorInfo` whose `reason` is the error's stable reason; bad requests add `BadRequest` field violations
and retryable errors add `RetryInfo`. An exception that is not a QuarryError becomes INTERNAL with a
generic message; its detail goes to the log only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from server.domain import errors

log = logging.getLogger(__name__)

DOMAIN = "quarry.v1"

STATUS_BY_ERROR: dict[type[errors.QuarryError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.OutOfRange: grpc.StatusCode.OUT_OF_RANGE,
    errors.DataLoss: grpc.StatusCode.DATA_LOSS,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Aborted: grpc.StatusCode.ABORTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.NotSupported: grpc.StatusCode.UNIMPLEMENTED,
    errors.Internal: grpc.StatusCode.INTERNAL,
    errors.QuarryError: grpc.StatusCode.INTERNAL,
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
    """The status code of a domain error: the first mapped class in its MRO."""
    return _code_for_class(type(exc))


def _code_for_class(error_class: type) -> grpc.StatusCode:
    for klass in error_class.__mro__:
        if klass in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[klass]
    return grpc.StatusCode.INTERNAL


def code_for_kind(kind: str) -> grpc.StatusCode:
    """The status code of an error kind stored by name (e.g. a Failure's "ChecksumMismatch")."""
    error_class = getattr(errors, kind, None)
    if isinstance(error_class, type) and issubclass(error_class, errors.QuarryError):
        return _code_for_class(error_class)
    return grpc.StatusCode.INTERNAL


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def status_for(exc: BaseException) -> RpcStatus:
    """The gRPC status (code, message, rich details) for any exception a handler raised."""
    if not isinstance(exc, errors.QuarryError):
        log.error("unexpected error in handler", exc_info=exc)
        exc = errors.Internal("internal error; see the server log")
    elif isinstance(exc, errors.Internal):
        log.error("internal error: %s", exc.message, exc_info=exc)
        exc = errors.Internal("internal error; see the server log", reason=exc.reason)
    code = code_for(exc)
    details = [_pack(error_details_pb2.ErrorInfo(reason=exc.reason, domain=DOMAIN, metadata=exc.metadata))]
    if exc.violations:
        details.append(_pack(error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in exc.violations])))
    if exc.retryable or exc.retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int((exc.retry_after or 1.0) * 1e9))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=exc.message, details=details)
    return RpcStatus(code, exc.message, status.SerializeToString())
