"""Every error the SDK raises, in one tree.

    QuarryError
    ├── UsageError                  the API was used wrongly (bad ref, bad manifest); nothing was sent
    ├── IntegrityError              a local check failed: a download's sha256 differs, a file changed mid-upload
    ├── UploadFailed                an upload we waited for ended FAILED, CANCELLED or EXPIRED (.upload)
    ├── MissingDependency           an optional package is needed (pyarrow for preview)
    └── RpcError                    a call ended with a gRPC status (.code, .reason, .metadata, .retry_delay)
        ├── Cancelled               CANCELLED
        ├── InvalidArgument         INVALID_ARGUMENT (.violations)
        ├── DeadlineExceeded        DEADLINE_EXCEEDED
        ├── NotFound                NOT_FOUND
        ├── AlreadyExists           ALREADY_EXISTS
        ├── PermissionDenied        PERMISSION_DENIED (reason ROLE_REQUIRED, NAMESPACE_NOT_GRANTED)
        │   └── Unauthenticated     UNAUTHENTICATED: no token, or a malformed, unknown, expired, revoked one
        ├── ResourceExhausted       RESOURCE_EXHAUSTED (a quota: .metadata["quota"]; a rate: .retry_delay)
        ├── FailedPrecondition      FAILED_PRECONDITION
        │   ├── WrongOffset         reason WRONG_OFFSET (.expected_offset)
        │   ├── WrongState          reason WRONG_STATE, UPLOAD_CANCELLED, UPLOAD_EXPIRED, UPLOAD_FAILED, …
        │   └── BaseMoved           reason BASE_MOVED
        ├── Aborted                 ABORTED
        ├── OutOfRange              OUT_OF_RANGE
        ├── Unimplemented           UNIMPLEMENTED
        ├── Internal                INTERNAL, UNKNOWN
        ├── Unavailable             UNAVAILABLE
        │   └── ConnectError        UNAVAILABLE without a Quarry reason: the server could not be reached
        │       └── TlsError        the connection's security does not match the server's (never retried)
        └── DataLoss                DATA_LOSS
            └── ChecksumMismatch    reason CHECKSUM_MISMATCH

The class of an RpcError is chosen by the status code and the `google.rpc.ErrorInfo` reason carried in
the `grpc-status-details-bin` trailer, never by the message text; only an ErrorInfo of Quarry's domain
(`quarry.dev`) names a reason (the contract lists them all: `quarry.v1.ErrorReason`). `from_grpc` makes ours
from grpc's, and `quarry._transport.translated` is the one place that catches grpc's exceptions to apply it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc

__all__ = [
    "ERROR_DOMAIN", "Aborted", "AlreadyExists", "BaseMoved", "Cancelled", "ChecksumMismatch", "ConnectError",
    "DataLoss", "DeadlineExceeded", "FailedPrecondition", "FieldViolation", "IntegrityError", "Internal",
    "InvalidArgument", "MissingDependency", "NotFound", "OutOfRange", "PermissionDenied", "QuarryError",
    "ResourceExhausted", "RpcError", "TlsError", "Unauthenticated", "Unavailable", "Unimplemented", "UploadFailed",
    "UsageError", "WrongOffset",
    "WrongState", "error_for", "from_grpc",
]

ERROR_DOMAIN = "quarry.dev"  # the google.rpc.ErrorInfo domain of Quarry's errors (AIP-193)


class QuarryError(Exception):
    """Root of every error the SDK raises."""


class UsageError(QuarryError, ValueError):
    """The SDK was called with something it cannot use; nothing was sent to the server."""


class IntegrityError(QuarryError):
    """Bytes on this machine do not match what they should be (a download's sha256, a file that changed)."""


class MissingDependency(QuarryError, ImportError):
    """A feature needs an optional package that is not installed."""


class UploadFailed(QuarryError):
    """An upload the caller waited for ended in FAILED, CANCELLED or EXPIRED."""

    def __init__(self, message: str, upload: Any) -> None:
        super().__init__(message)
        self.upload = upload


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request, from the `google.rpc.BadRequest` detail."""

    field: str
    description: str


class RpcError(QuarryError):
    """A call ended with a non-OK gRPC status."""

    def __init__(self, code: grpc.StatusCode, message: str, *, reason: str = "",
                 metadata: dict[str, str] | None = None, violations: list[FieldViolation] | None = None,
                 retry_delay: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        self.metadata = dict(metadata or {})
        self.violations = list(violations or [])
        self.retry_delay = retry_delay

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


class Cancelled(RpcError):
    """The call was cancelled."""


class InvalidArgument(RpcError):
    """The request was malformed; `violations` names the bad fields."""


class DeadlineExceeded(RpcError):
    """The call did not finish before its deadline."""


class NotFound(RpcError):
    """The named resource does not exist."""


class AlreadyExists(RpcError):
    """A resource with that name already exists."""


class PermissionDenied(RpcError):
    """The caller may not do that (or is not authenticated)."""


class Unauthenticated(PermissionDenied):
    """The call carried no usable token (`reason`: TOKEN_MISSING, TOKEN_INVALID, TOKEN_EXPIRED, TOKEN_REVOKED)."""


class ResourceExhausted(RpcError):
    """A quota or size limit was reached."""


class FailedPrecondition(RpcError):
    """The resource is not in a state that allows the request."""


class WrongOffset(FailedPrecondition):
    """A write started somewhere other than where the upload continues."""

    @property
    def expected_offset(self) -> int:
        """The offset the server expects the write to start at."""
        return int(self.metadata.get("expected_offset", "0"))


class WrongState(FailedPrecondition):
    """The upload or version is in a state that does not allow the request."""


class BaseMoved(FailedPrecondition):
    """The commit's base version is no longer current and the same paths changed."""


class Aborted(RpcError):
    """A concurrent change got in the way; retrying may succeed."""


class OutOfRange(RpcError):
    """A read or write past the end."""


class Unimplemented(RpcError):
    """The server does not implement that call (yet), or not with this deployment."""


class Internal(RpcError):
    """The server failed unexpectedly."""


class Unavailable(RpcError):
    """The server or one of its dependencies is unavailable; retrying may succeed."""


class ConnectError(Unavailable):
    """The server could not be reached at all."""


class TlsError(ConnectError):
    """TLS on one side and not the other, an untrusted certificate, or a client certificate missing: trying
    again cannot help, so it is never retried."""


class DataLoss(RpcError):
    """Bytes were corrupted or lost."""


class ChecksumMismatch(DataLoss):
    """A checksum of the sent bytes differs from the declared one."""


_BY_CODE: dict[grpc.StatusCode, type[RpcError]] = {
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.UNKNOWN: Internal,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.ABORTED: Aborted,
    grpc.StatusCode.OUT_OF_RANGE: OutOfRange,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
    grpc.StatusCode.INTERNAL: Internal,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DATA_LOSS: DataLoss,
}

# Reasons that refine a code's class. Unknown reasons keep the code's class, so new server reasons are safe.
_BY_REASON: dict[tuple[grpc.StatusCode, str], type[RpcError]] = {
    (grpc.StatusCode.FAILED_PRECONDITION, "WRONG_OFFSET"): WrongOffset,
    (grpc.StatusCode.FAILED_PRECONDITION, "BASE_MOVED"): BaseMoved,
    (grpc.StatusCode.DATA_LOSS, "CHECKSUM_MISMATCH"): ChecksumMismatch,
    **{(grpc.StatusCode.FAILED_PRECONDITION, reason): WrongState
       for reason in ("WRONG_STATE", "UPLOAD_CANCELLED", "UPLOAD_EXPIRED", "UPLOAD_FAILED", "UPLOAD_FINISHED",
                      "UPLOAD_NOT_CANCELLABLE", "UPLOAD_NOT_FAILED")},
}


def error_for(code: grpc.StatusCode, reason: str = "") -> type[RpcError]:
    """The exception class for a status code and an ErrorInfo reason."""
    if code is grpc.StatusCode.UNAVAILABLE and not reason:
        return ConnectError  # Quarry's own UNAVAILABLE always carries a reason; grpc's transport never does
    return _BY_REASON.get((code, reason)) or _BY_CODE.get(code, Internal)


@dataclass
class _Details:
    reason: str = ""
    metadata: dict[str, str] | None = None
    violations: list[FieldViolation] | None = None
    retry_delay: float | None = None


def _parse_details(trailers: Any) -> _Details:
    """The google.rpc details (ErrorInfo, BadRequest, RetryInfo) of a `grpc-status-details-bin` trailer."""
    from google.rpc import error_details_pb2, status_pb2

    found = _Details()
    for key, value in trailers or ():
        if key != "grpc-status-details-bin":
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except Exception:  # a foreign proxy's garbage must not hide the status code
            return found
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                if info.domain == ERROR_DOMAIN:  # another domain's (a proxy's) reason is not one of ours
                    found.reason, found.metadata = info.reason, dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                found.violations = [FieldViolation(v.field, v.description) for v in bad.field_violations]
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                found.retry_delay = retry.retry_delay.ToNanoseconds() / 1e9
    return found


def from_grpc(error: grpc.RpcError) -> RpcError:
    """Our exception for a failed grpc call (sync or aio)."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message = (error.details() if hasattr(error, "details") else "") or code.name.lower().replace("_", " ")
    trailers = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    details = _parse_details(trailers)
    kind = error_for(code, details.reason)
    return kind(code, message, reason=details.reason, metadata=details.metadata, violations=details.violations,
                retry_delay=details.retry_delay)
