"""Admission: the one place a call's caller is resolved, for gRPC and any other protocol alike.

`admit` takes what a protocol adapter read off the call (the method's rule, the `authorization` and
`x-quarry-namespace` values, the peer) and returns the Caller, or raises:

- UNAUTHENTICATED when the method needs a token and the call's is missing, malformed, unknown, expired or
  revoked (`Authenticator`);
- PERMISSION_DENIED (NAMESPACE_NOT_GRANTED) when `x-quarry-namespace` names a namespace the token has no
  grant on — the header only chooses among the token's namespaces (default: its first grant);
- PERMISSION_DENIED (ROLE_REQUIRED, role "operator") for operator methods called without an operator token;
- RESOURCE_EXHAUSTED (RATE_LIMITED, with a retry delay) past the namespace's calls per second for the token.

The role a method needs in a namespace is checked by the use case, against every namespace its request
names (`Caller.check`). `conclude` writes the audit row the call still needs when it ends.

With QUARRY_AUTH_MODE=none there are no tokens: every caller is trusted as an operator acting in the
namespace `x-quarry-namespace` names (or the default), for a trusted network.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from server.domain.access import Rule
from server.domain.audit import AuditTrail
from server.domain.caller import Caller, CallRecord
from server.domain.identity import Authenticator
from server.domain.namespaces import Namespaces
from server.model.errors import PermissionDenied, RateLimited
from server.model.identity import Access, Principal
from server.model.names import validate_namespace
from server.storage.ratelimit import RateLimiter


class AuthMode(StrEnum):
    """How callers prove who they are."""

    TOKENS = "tokens"
    NONE = "none"


@dataclass(frozen=True)
class Credentials:
    """What a call carries that admission reads: its `authorization` and `x-quarry-namespace` values."""

    authorization: str | None = None
    namespace: str | None = None


TRUSTED = Principal("anonymous", operator=True)


class Admission:
    """Resolves the caller of each call and records how calls end."""

    def __init__(self, mode: AuthMode, default_namespace: str, authenticator: Authenticator,
                 namespaces: Namespaces, limiter: RateLimiter | None, audit: AuditTrail) -> None:
        self.mode = mode
        self.default_namespace = default_namespace
        self.authenticator = authenticator
        self.namespaces = namespaces
        self.limiter = limiter
        self.audit = audit

    async def admit(self, call: CallRecord, rule: Rule, credentials: Credentials) -> Caller | None:
        """The caller of a call of a method with `rule` (None for methods that need no token)."""
        call.mutating = rule.mutating
        if rule.access is Access.NONE:
            return None
        call.namespace = credentials.namespace or ""  # what the call asked for, until it is resolved
        if self.mode is AuthMode.NONE:
            principal = TRUSTED
        else:
            principal = await self.authenticator.authenticate(credentials.authorization, call)
        call.principal, call.token_id = principal.name, principal.token_id
        namespace = self._namespace(principal, credentials.namespace)
        call.namespace = namespace
        if rule.access is Access.OPERATOR and not principal.operator:
            raise PermissionDenied(f"{call.method} needs an operator; {principal.name} is not one",
                                   reason="ROLE_REQUIRED", metadata={"role": "operator", "namespace": namespace})
        caller = Caller(namespace, principal, rule.access.role, call)
        await self._limit(principal, namespace)
        return caller

    def _namespace(self, principal: Principal, header: str | None) -> str:
        if header:
            validate_namespace(header)  # INVALID_NAMESPACE
            if principal.role_in(header) is None:
                raise PermissionDenied(f"{principal.name} has no grant on namespace {header!r}",
                                       reason="NAMESPACE_NOT_GRANTED", metadata={"namespace": header})
            return header
        return principal.default_namespace or self.default_namespace

    async def _limit(self, principal: Principal, namespace: str) -> None:
        if self.limiter is None or principal.token_id is None:
            return
        rate = (await self.namespaces.quota_of(namespace)).requests_per_second
        if rate <= 0:
            return
        wait = await self.limiter.wait_needed(f"{principal.token_id}:{namespace}", rate)
        if wait > 0:
            raise RateLimited(f"token {principal.token_id} made more than {rate:g} calls per second in namespace "
                              f"{namespace}; retry in {wait:.3f}s", retry_after=wait,
                              metadata={"namespace": namespace, "requests_per_second": f"{rate:g}"})

    def needs_conclusion(self, call: CallRecord, code: str) -> bool:
        """Whether `conclude` has anything to write for a call that ended with `code` (most reads: nothing)."""
        return self.audit.needs_row(call, code)

    async def conclude(self, call: CallRecord, code: str, reason: str) -> None:
        """The call ended with `code` (a status code name, "OK" on success): write its audit row if it needs one."""
        await self.audit.conclude(call, code, reason)
