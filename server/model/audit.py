"""The audit trail: one row per mutating call and per denied call, never changed once written."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class AuditEvent:
    """What happened: who (principal, token), where (namespace, resource), what (method), and the outcome
    (a status code name such as "OK" or "PERMISSION_DENIED", and the error's reason)."""

    principal: str
    token_id: str | None
    namespace: str
    method: str
    resource: str
    code: str
    reason: str
    request_id: str
    peer: str
    id: int = 0
    event_time: datetime | None = None

    @property
    def name(self) -> str:
        """The resource name, `auditEvents/{id}`."""
        return f"auditEvents/{self.id}"
