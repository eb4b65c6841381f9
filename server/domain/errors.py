"""Domain errors: every failure a caller can see, by kind.

    QuarryError                      reason
    ├── InvalidArgument              INVALID_ARGUMENT (+ field violations)
    │   └── InvalidFile              (the issue's code: RAGGED_ROW, INVALID_JSON, …) a file failed validation
    ├── NotFound                     NOT_FOUND
    ├── AlreadyExists                ALREADY_EXISTS
    ├── PermissionDenied             PERMISSION_DENIED
    ├── FailedPrecondition           FAILED_PRECONDITION
    │   ├── WrongOffset              WRONG_OFFSET (metadata: expected_offset)
    │   ├── WrongState               WRONG_STATE (metadata: state)
    │   ├── BaseMoved                BASE_MOVED (metadata: paths)
    │   └── RuleViolation            (the rule: FORMAT_NOT_ALLOWED, COLUMN_REMOVED, …) a dataset rule failed
    ├── OutOfRange                   OUT_OF_RANGE
    ├── DataLoss                     DATA_LOSS
    │   └── ChecksumMismatch         CHECKSUM_MISMATCH
    ├── ResourceExhausted            RESOURCE_EXHAUSTED
    ├── Aborted                      ABORTED (retryable)
    ├── Unavailable                  UNAVAILABLE (retryable)
    ├── NotSupported                 NOT_SUPPORTED
    └── Internal                     INTERNAL

Each error carries a stable UPPER_SNAKE `reason` that clients switch on (subclasses and call sites may
refine it), string `metadata` for `google.rpc.ErrorInfo`, and, for bad requests, field violations.
The gRPC status code of each kind is chosen in one table, `server/api/errors.py`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request: its path (e.g. "upload.path") and why."""

    field: str
    description: str


class QuarryError(Exception):
    """Root of every error a caller can see."""

    reason = "QUARRY_ERROR"
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
        self.metadata = dict(metadata or {})
        self.violations = list(violations or [])
        self.retry_after = retry_after


class InvalidArgument(QuarryError):
    """The request is malformed: a bad name, path, size, page token, filter or mask."""

    reason = "INVALID_ARGUMENT"

    @classmethod
    def field(cls, field: str, description: str, *, reason: str | None = None) -> InvalidArgument:
        """An error about one field, with the field violation attached."""
        return cls(f"{field}: {description}", reason=reason, violations=[FieldViolation(field, description)])


class InvalidFile(InvalidArgument):
    """A file's content is not valid for its format (its reason is the first issue's code)."""

    reason = "INVALID_FILE"


class NotFound(QuarryError):
    """The named resource does not exist (in the caller's namespace)."""

    reason = "NOT_FOUND"


class AlreadyExists(QuarryError):
    """A resource with that name already exists."""

    reason = "ALREADY_EXISTS"


class PermissionDenied(QuarryError):
    """The caller may not act on that resource (e.g. it is in another namespace)."""

    reason = "PERMISSION_DENIED"


class FailedPrecondition(QuarryError):
    """The system is not in a state that allows the request."""

    reason = "FAILED_PRECONDITION"


class WrongOffset(FailedPrecondition):
    """A write started at an offset other than the expected one."""

    reason = "WRONG_OFFSET"

    def __init__(self, message: str, *, expected_offset: int) -> None:
        super().__init__(message, metadata={"expected_offset": str(expected_offset)})
        self.expected_offset = expected_offset


class WrongState(FailedPrecondition):
    """The resource is in a state that does not allow the request."""

    reason = "WRONG_STATE"

    def __init__(self, message: str, *, state: str, reason: str | None = None) -> None:
        super().__init__(message, reason=reason, metadata={"state": state})
        self.state = state


class BaseMoved(FailedPrecondition):
    """A commit's base version is not current and the same paths changed since."""

    reason = "BASE_MOVED"


class RuleViolation(FailedPrecondition):
    """A file breaks one of its dataset's rules (its reason is the rule's code)."""

    reason = "RULE_VIOLATION"


class OutOfRange(QuarryError):
    """A read or write past the end of a file or past a declared size."""

    reason = "OUT_OF_RANGE"


class DataLoss(QuarryError):
    """Bytes were corrupted or lost."""

    reason = "DATA_LOSS"


class ChecksumMismatch(DataLoss):
    """A checksum of received or stored bytes differs from the declared one."""

    reason = "CHECKSUM_MISMATCH"


class ResourceExhausted(QuarryError):
    """A quota or size limit was reached."""

    reason = "RESOURCE_EXHAUSTED"


class Aborted(QuarryError):
    """A concurrent change got in the way (stale etag, lost race); retrying may succeed."""

    reason = "ABORTED"
    retryable = True


class Unavailable(QuarryError):
    """A dependency (Postgres, Redis, the object store) did not answer; retrying may succeed."""

    reason = "UNAVAILABLE"
    retryable = True


class NotSupported(QuarryError):
    """The request is valid but this deployment cannot serve it (e.g. presigned URLs on a local store)."""

    reason = "NOT_SUPPORTED"


class Internal(QuarryError):
    """An invariant broke; the details are in the server log."""

    reason = "INTERNAL"
