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

Each error carries its `kind` (an ErrorKind, inherited by subclasses), a stable UPPER_SNAKE `reason` that
clients switch on (subclasses and call sites may refine it), string `metadata` for `google.rpc.ErrorInfo`,
and, for bad requests, field violations. The gRPC status code of each kind is chosen in one table,
`server/api/errors.py`.

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

    kind = ErrorKind.INVALID_ARGUMENT
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

    kind = ErrorKind.NOT_FOUND
    reason = "NOT_FOUND"


class AlreadyExists(QuarryError):
    """A resource with that name already exists."""

    kind = ErrorKind.ALREADY_EXISTS
    reason = "ALREADY_EXISTS"


class PermissionDenied(QuarryError):
    """The caller may not act on that resource (e.g. it is in another namespace)."""

    kind = ErrorKind.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"


class FailedPrecondition(QuarryError):
    """The system is not in a state that allows the request."""

    kind = ErrorKind.FAILED_PRECONDITION
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

    kind = ErrorKind.OUT_OF_RANGE
    reason = "OUT_OF_RANGE"


class DataLoss(QuarryError):
    """Bytes were corrupted or lost."""

    kind = ErrorKind.DATA_LOSS
    reason = "DATA_LOSS"


class ChecksumMismatch(DataLoss):
    """A checksum of received or stored bytes differs from the declared one."""

    reason = "CHECKSUM_MISMATCH"


class ResourceExhausted(QuarryError):
    """A quota or size limit was reached."""

    kind = ErrorKind.RESOURCE_EXHAUSTED
    reason = "RESOURCE_EXHAUSTED"


class Aborted(QuarryError):
    """A concurrent change got in the way (stale etag, lost race); retrying may succeed."""

    kind = ErrorKind.ABORTED
    reason = "ABORTED"
    retryable = True


class Unavailable(QuarryError):
    """A dependency (Postgres, Redis, the object store) did not answer; retrying may succeed."""

    kind = ErrorKind.UNAVAILABLE
    reason = "UNAVAILABLE"
    retryable = True


class NotSupported(QuarryError):
    """The request is valid but this deployment cannot serve it (e.g. presigned URLs on a local store)."""

    kind = ErrorKind.NOT_SUPPORTED
    reason = "NOT_SUPPORTED"


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
