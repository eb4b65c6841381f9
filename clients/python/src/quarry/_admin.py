"""Tokens, namespaces and the audit trail as calls to make, built without I/O (shared by both clients)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from google.protobuf import duration_pb2, field_mask_pb2

from quarry._calls import Pages, Unary
from quarry._exceptions import UsageError
from quarry._requests import request_id as new_request_id
from quarry.v1 import audit_service_pb2 as apb
from quarry.v1 import namespace_pb2, token_pb2
from quarry.v1 import namespace_service_pb2 as npb
from quarry.v1 import token_service_pb2 as tpb

__all__ = ["ROLES", "AdminCalls", "IssuedToken", "parse_duration"]

ROLES = {"reader": token_pb2.ROLE_READER, "writer": token_pb2.ROLE_WRITER, "admin": token_pb2.ROLE_ADMIN}
QUOTAS = ("max_bytes", "max_open_uploads", "max_datasets", "requests_per_second")
ALL = "namespaces/-"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


@dataclass(frozen=True)
class IssuedToken:
    """A token just issued, with its secret: shown this once, stored nowhere by Quarry."""

    token: token_pb2.Token
    secret: str

    def __repr__(self) -> str:
        return f"IssuedToken(token={self.token.name!r}, principal={self.token.principal!r})"


def parse_duration(text: str) -> float:
    """Seconds in `30d`, `12h`, `90m`, `45s` or a bare number of seconds; UsageError otherwise."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise UsageError(f"invalid duration {text!r}: use a number with s, m, h, d or w (e.g. 30d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def grants_of(grants: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[token_pb2.Grant]:
    """Grant messages from namespace -> role name ("reader", "writer", "admin")."""
    pairs = grants.items() if isinstance(grants, Mapping) else grants
    found = []
    for namespace, role in pairs:
        if role not in ROLES:
            raise UsageError(f"invalid role {role!r} for namespace {namespace!r}: use reader, writer or admin")
        found.append(token_pb2.Grant(namespace=_namespace_name(namespace), role=ROLES[role]))
    return found


def _namespace_name(namespace: str) -> str:
    return namespace if namespace.startswith("namespaces/") else f"namespaces/{namespace}"


def token_name(token: str) -> str:
    """`tokens/{id}` from an id, a name, or a whole token (whose secret is never sent)."""
    if token.startswith("qk_"):
        token = token.split("_")[1] if token.count("_") >= 2 else token
    return token if token.startswith("tokens/") else f"tokens/{token}"


def _seconds(value: float | timedelta | None) -> float | None:
    return value.total_seconds() if isinstance(value, timedelta) else value


class AdminCalls:
    """The token, namespace and audit calls of a client acting in one namespace."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def _parent(self, namespace: str | None, every: bool) -> str:
        return ALL if every else _namespace_name(namespace or self.namespace)

    # --- tokens ----------------------------------------------------------------------------------------

    def create_token(self, principal: str, grants: Mapping[str, str] | Iterable[tuple[str, str]], *, operator: bool,
                     expires: float | timedelta | None, request_id: str | None) -> Unary[IssuedToken]:
        """CreateToken. Repeated only with a request_id of the caller's: a repeat returns no secret."""
        token = token_pb2.Token(principal=principal, grants=grants_of(grants), operator=operator)
        seconds = _seconds(expires)
        if seconds is not None:
            token.ttl.CopyFrom(duration_pb2.Duration(seconds=int(seconds), nanos=int(seconds % 1 * 1e9)))
        request = tpb.CreateTokenRequest(token=token, request_id=request_id or "")
        return Unary("tokens", "CreateToken", request, _issued, idempotent=request_id is not None)

    def list_tokens(self, *, namespace: str | None, every: bool, show_revoked: bool,
                    page_size: int) -> Pages[token_pb2.Token]:
        """ListTokens of one namespace (default: the client's), or of all ("every": operators)."""
        request = tpb.ListTokensRequest(parent=self._parent(namespace, every), show_revoked=show_revoked,
                                        page_size=page_size)
        return Pages(Unary("tokens", "ListTokens", request), "tokens")

    def revoke_token(self, token: str) -> Unary[token_pb2.Token]:
        """RevokeToken (harmless to repeat)."""
        return Unary("tokens", "RevokeToken", tpb.RevokeTokenRequest(name=token_name(token)), _token)

    # --- namespaces ------------------------------------------------------------------------------------

    def create_namespace(self, name: str, *, quota: Mapping[str, float], request_id: str | None
                         ) -> Unary[namespace_pb2.Namespace]:
        """CreateNamespace, safe to repeat: it carries a request_id."""
        request = npb.CreateNamespaceRequest(namespace_id=name, request_id=new_request_id(request_id),
                                             namespace=namespace_pb2.Namespace(quota=_quota(quota)))
        return Unary("namespaces", "CreateNamespace", request, _namespace)

    def list_namespaces(self, *, page_size: int) -> Pages[namespace_pb2.Namespace]:
        """ListNamespaces: those the token is granted (all, for an operator)."""
        return Pages(Unary("namespaces", "ListNamespaces", npb.ListNamespacesRequest(page_size=page_size)),
                     "namespaces")

    def get_namespace(self, name: str | None) -> Unary[namespace_pb2.Namespace]:
        """GetNamespace, with its usage (None: the client's namespace)."""
        return Unary("namespaces", "GetNamespace", npb.GetNamespaceRequest(name=_namespace_name(name or
                                                                                               self.namespace)),
                     _namespace)

    def update_namespace(self, name: str, *, quota: Mapping[str, float | None], etag: str
                         ) -> Unary[namespace_pb2.Namespace]:
        """UpdateNamespace of the quota fields given (not None); repeated only without an etag."""
        chosen = {key: value for key, value in quota.items() if value is not None}
        if not chosen:
            raise UsageError("nothing to change: give at least one of " + ", ".join(QUOTAS))
        request = npb.UpdateNamespaceRequest(
            namespace=namespace_pb2.Namespace(name=_namespace_name(name), etag=etag, quota=_quota(chosen)),
            update_mask=field_mask_pb2.FieldMask(paths=[f"quota.{key}" for key in chosen]))
        return Unary("namespaces", "UpdateNamespace", request, _namespace, idempotent=not etag)

    # --- audit -----------------------------------------------------------------------------------------

    def list_audit_events(self, *, namespace: str | None, every: bool, filter: str, principal: str | None,
                          method: str | None, since: datetime | None, until: datetime | None,
                          page_size: int) -> Pages[Any]:
        """ListAuditEvents, newest first, with a filter made of the terms given."""
        terms = [filter] if filter else []
        terms += [f"principal = {_quoted(principal)}"] if principal else []
        terms += [f"method = {_quoted(method)}"] if method else []
        for operator, moment in ((">=", since), ("<", until)):
            if moment is not None:
                if moment.tzinfo is None:
                    raise UsageError(f"{moment.isoformat()} has no time zone")
                terms.append(f"event_time {operator} {_quoted(moment.isoformat())}")
        request = apb.ListAuditEventsRequest(parent=self._parent(namespace, every), filter=" AND ".join(terms),
                                             page_size=page_size)
        return Pages(Unary("audit", "ListAuditEvents", request), "events")


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _quota(values: Mapping[str, float]) -> namespace_pb2.NamespaceQuota:
    unknown = set(values) - set(QUOTAS)
    if unknown:
        raise UsageError(f"unknown quota {', '.join(sorted(unknown))}: use {', '.join(QUOTAS)}")
    quota = namespace_pb2.NamespaceQuota()
    for key, value in values.items():
        setattr(quota, key, float(value) if key == "requests_per_second" else int(value))
    return quota


def _issued(response: Any) -> IssuedToken:
    return IssuedToken(response.token, response.secret)


def _token(response: Any) -> token_pb2.Token:
    return response.token


def _namespace(response: Any) -> namespace_pb2.Namespace:
    return response.namespace
