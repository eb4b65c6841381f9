"""Domain errors: every failure a caller can see, by kind.

    QuarryError                      reason (— : each raise names its own)
    ├── InvalidArgument              INVALID_ARGUMENT, or a precise one (+ field violations)
    │   └── InvalidFile              — the first issue's code: RAGGED_ROW, INVALID_JSON, … (a file failed validation)
    ├── Unauthenticated              — TOKEN_MISSING, TOKEN_INVALID, TOKEN_EXPIRED, TOKEN_REVOKED
    ├── NotFound                     — e.g. DATASET_NOT_FOUND, UPLOAD_NOT_FOUND
    ├── AlreadyExists                — e.g. DATASET_ALREADY_EXISTS
    ├── PermissionDenied             — ROLE_REQUIRED (metadata: role, namespace), NAMESPACE_NOT_GRANTED
    ├── FailedPrecondition           — e.g. UPLOAD_NOT_COMMITTABLE
    │   ├── WrongOffset              WRONG_OFFSET (metadata: expected_offset)
    │   ├── WrongState               — e.g. UPLOAD_CANCELLED (metadata: state)
    │   ├── BaseMoved                BASE_MOVED (metadata: paths)
    │   └── RuleViolation            — the rule's code: FORMAT_NOT_ALLOWED, COLUMN_REMOVED, … (a dataset rule failed)
    ├── OutOfRange                   — e.g. OFFSET_OUT_OF_RANGE
    ├── DataLoss                     — e.g. STAGED_OBJECT_MISSING
    │   └── ChecksumMismatch         CHECKSUM_MISMATCH
    ├── ResourceExhausted            — e.g. UPLOAD_TOO_LARGE
    │   ├── QuotaExceeded            QUOTA_EXCEEDED, or TOO_MANY_OPEN_UPLOADS (metadata: quota, limit, subject)
    │   ├── RateLimited              RATE_LIMITED (retry_after: when the token may call again)
    │   └── BufferBudgetSpent        BUFFER_BUDGET_SPENT (retryable: the server's stream memory is spent for now)
    ├── Aborted                      — e.g. CONCURRENT_CHANGE (retryable)
    │   └── StreamIdle               STREAM_IDLE (an upload stream sent nothing for too long)
    ├── Unavailable                  — e.g. STORE_UNAVAILABLE (retryable)
    ├── NotSupported                 — e.g. DOWNLOAD_URL_UNSUPPORTED
    └── Internal                     INTERNAL, or a precise one

Each error carries its `kind` (an ErrorKind, inherited by subclasses), a stable UPPER_SNAKE `reason` that
clients switch on, string `metadata` for `google.rpc.ErrorInfo`, and, for bad requests, field violations. A
class has a default reason only where a raise without one occurs; the others make every raise name its
reason, so no reason exists that nothing raises (tests/test_reasons.py checks this, and that a test names
every reason). The gRPC status code of each kind is chosen in one table, `server/api/errors.py`.

ConfigError is the other root: a setting is unusable. It never reaches a caller; the entry points print
it as one line naming the variable.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ErrorKind(StrEnum):
    """What kind of failure an error is: the API maps each kind to one status code, and a failure stored in
    Postgres records its kind (never a class name, which a rename would silently turn into INTERNAL)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    DATA_LOSS = "DATA_LOSS"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    ABORTED = "ABORTED"
    UNAVAILABLE = "UNAVAILABLE"
    NOT_SUPPORTED = "NOT_SUPPORTED"
    INTERNAL = "INTERNAL"


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request: its path (e.g. "upload.path") and why."""

    field: str
    description: str


class QuarryError(Exception):
    """Root of every error a caller can see."""

    kind = ErrorKind.INTERNAL
    reason: str  # a class default where the class has one; otherwise each raise passes `reason=`
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: dict[str, str] | None = None,
        violations: list[FieldViolation] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        elif not hasattr(self, "reason"):
            raise TypeError(f"{type(self).__name__} has no default reason: pass reason=")
        self.metadata = dict(metadata or {})
        self.violations = list(violations or [])
        self.retry_after = retry_after


class InvalidArgument(QuarryError):
    """The request is malformed: a bad name, path, size, page token, filter or mask."""

    kind = ErrorKind.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"

    @classmethod
    def field(cls, field: str, description: str, *, reason: str | None = None) -> InvalidArgument:
        """An error about one field, with the field violation attached."""
        return cls(f"{field}: {description}", reason=reason, violations=[FieldViolation(field, description)])


class InvalidFile(InvalidArgument):
    """A file's content is not valid for its format (its reason is the first issue's code)."""


class Unauthenticated(QuarryError):
    """The call carries no usable credentials: no token, a malformed or unknown one, an expired or revoked one."""

    kind = ErrorKind.UNAUTHENTICATED


class NotFound(QuarryError):
    """The named resource does not exist (in the caller's namespace)."""

    kind = ErrorKind.NOT_FOUND


class AlreadyExists(QuarryError):
    """A resource with that name already exists."""

    kind = ErrorKind.ALREADY_EXISTS


class PermissionDenied(QuarryError):
    """The caller is known but may not do this: a role it lacks, or a namespace it was not granted."""

    kind = ErrorKind.PERMISSION_DENIED


class FailedPrecondition(QuarryError):
    """The system is not in a state that allows the request."""

    kind = ErrorKind.FAILED_PRECONDITION


class WrongOffset(FailedPrecondition):
    """A write started at an offset other than the expected one."""

    reason = "WRONG_OFFSET"

    def __init__(self, message: str, *, expected_offset: int) -> None:
        super().__init__(message, metadata={"expected_offset": str(expected_offset)})
        self.expected_offset = expected_offset


class WrongState(FailedPrecondition):
    """The resource is in a state that does not allow the request (each raise names which)."""

    def __init__(self, message: str, *, state: str, reason: str) -> None:
        super().__init__(message, reason=reason, metadata={"state": state})
        self.state = state


class BaseMoved(FailedPrecondition):
    """A commit's base version is not current and the same paths changed since."""

    reason = "BASE_MOVED"


class RuleViolation(FailedPrecondition):
    """A file breaks one of its dataset's rules (its reason is the rule's code)."""


class OutOfRange(QuarryError):
    """A read or write past the end of a file or past a declared size."""

    kind = ErrorKind.OUT_OF_RANGE


class DataLoss(QuarryError):
    """Bytes were corrupted or lost."""

    kind = ErrorKind.DATA_LOSS


class ChecksumMismatch(DataLoss):
    """A checksum of received or stored bytes differs from the declared one."""

    reason = "CHECKSUM_MISMATCH"


class ResourceExhausted(QuarryError):
    """A quota or size limit was reached."""

    kind = ErrorKind.RESOURCE_EXHAUSTED


class QuotaExceeded(ResourceExhausted):
    """A namespace's quota (set by an operator) would be exceeded; `quota` names it, e.g. "max_bytes"."""

    reason = "QUOTA_EXCEEDED"

    def __init__(self, message: str, *, subject: str, quota: str, limit: int, reason: str | None = None) -> None:
        super().__init__(message, reason=reason, metadata={"quota": quota, "limit": str(limit), "subject": subject})
        self.subject = subject
        self.quota = quota
        self.limit = limit


class RateLimited(ResourceExhausted):
    """A token made more calls per second than its namespace allows; it may call again after `retry_after`."""

    reason = "RATE_LIMITED"


class BufferBudgetSpent(ResourceExhausted):
    """The server holds as many bytes for streams as its buffer budget allows; trying again shortly may succeed."""

    reason = "BUFFER_BUDGET_SPENT"
    retryable = True


class Aborted(QuarryError):
    """A concurrent change got in the way (stale etag, lost race); retrying may succeed."""

    kind = ErrorKind.ABORTED
    retryable = True


class StreamIdle(Aborted):
    """The client sent nothing on its stream for too long: the stream ended, the committed parts are kept."""

    reason = "STREAM_IDLE"


class Unavailable(QuarryError):
    """A dependency (Postgres, Redis, the object store) did not answer; retrying may succeed."""

    kind = ErrorKind.UNAVAILABLE
    retryable = True


class NotSupported(QuarryError):
    """The request is valid but this deployment cannot serve it (e.g. presigned URLs on a local store)."""

    kind = ErrorKind.NOT_SUPPORTED


class Internal(QuarryError):
    """An invariant broke; the details are in the server log."""

    kind = ErrorKind.INTERNAL
    reason = "INTERNAL"


class ConfigError(Exception):
    """A setting is missing, malformed, or names something unusable (an unreachable host, a busy port)."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem
