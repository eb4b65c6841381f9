"""Why an upload or a version failed, as stored in Postgres."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from server.model.errors import ErrorKind, QuarryError


@dataclass(frozen=True)
class Failure:
    """Why an upload or version failed: the error's kind and reason, and its details."""

    kind: ErrorKind
    reason: str
    message: str
    path: str = ""
    retryable: bool = False

    @classmethod
    def of(cls, error: QuarryError, path: str = "") -> Failure:
        """The failure a domain error describes."""
        return cls(error.kind, error.reason, error.message, path, error.retryable)

    def to_json(self) -> dict[str, Any]:
        """The jsonb form stored in Postgres."""
        return {"kind": self.kind.value, "reason": self.reason, "message": self.message, "path": self.path,
                "retryable": self.retryable}

    @classmethod
    def from_json(cls, value: dict[str, Any] | None) -> Failure | None:
        """Read the jsonb form."""
        if not value:
            return None
        return cls(ErrorKind(value["kind"]), value["reason"], value["message"], value.get("path", ""),
                   bool(value.get("retryable", False)))
