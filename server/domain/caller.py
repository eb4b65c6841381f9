"""Who is calling and what this call may touch, resolved once per call (`server/domain/admission.py`).

A Caller carries its principal (name, token, grants), the namespace the call acts in when its request
names none, and the role the RPC needs (from `server/domain/access.py`). Use cases call `check` (or
`parent`) with every namespace a request names, before they read or change anything: that is where a
missing grant or a too-low role is refused, so a denied call leaves nothing behind and learns nothing
about what exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from server.model.errors import InvalidArgument, PermissionDenied
from server.model.identity import SYSTEM, Principal, Role
from server.model.names import NAME_PATTERN


@dataclass
class CallRecord:
    """One RPC as the audit trail and the authorization guard see it (filled in as the call proceeds)."""

    method: str = ""
    peer: str = ""
    request_id: str = ""
    principal: str = ""  # known once the token is
    token_id: str | None = None
    mutating: bool = False
    namespace: str = ""  # the namespace the call touched, once checked
    resource: str = ""
    checked: bool = False  # a use case checked the caller's role on a namespace
    audited: bool = False  # a use case wrote the call's audit row in its own transaction


@dataclass(frozen=True)
class Caller:
    """The caller of one call: principal, default namespace, the role the call needs, the call's record."""

    namespace: str
    principal: Principal = SYSTEM
    needs: Role | None = None
    call: CallRecord = field(default_factory=CallRecord, compare=False)

    @property
    def identity(self) -> str:
        """The principal's name (the author of the versions it commits)."""
        return self.principal.name

    def parent(self, parent: str) -> str:
        """The namespace named by a request's `parent` ("namespaces/{ns}", or empty for the caller's own)."""
        if not parent:
            return self.check(self.namespace)
        prefix, _, namespace = parent.partition("/")
        if prefix != "namespaces" or not NAME_PATTERN.match(namespace):
            raise InvalidArgument.field("parent", f"must be namespaces/{{namespace}}, got {parent!r}")
        return self.check(namespace)

    def check(self, namespace: str, needs: Role | None = None) -> str:
        """Refuse a namespace the principal holds no grant on, or a role below what the call needs there."""
        self.call.namespace = namespace  # the audit row of a refusal names the namespace it was about
        role = self.principal.role_in(namespace)
        if role is None:
            raise PermissionDenied(f"{self.identity} has no grant on namespace {namespace!r}",
                                   reason="NAMESPACE_NOT_GRANTED", metadata={"namespace": namespace})
        wanted = needs or self.needs
        if wanted is not None and role < wanted:
            raise PermissionDenied(f"{self.call.method or 'this call'} needs the {wanted.label} role in namespace "
                                   f"{namespace!r}; {self.identity} is {role.label}", reason="ROLE_REQUIRED",
                                   metadata={"role": wanted.label, "namespace": namespace})
        self.call.checked = True
        return namespace

    def require_operator(self) -> None:
        """Refuse a principal that is not an operator."""
        if not self.principal.operator:
            raise PermissionDenied(f"{self.call.method or 'this call'} needs an operator; {self.identity} is not "
                                   "one", reason="ROLE_REQUIRED", metadata={"role": "operator",
                                                                            "namespace": self.namespace})
        self.call.checked = True
