"""Conversions between the identity models (tokens, namespaces, audit events) and contract messages."""

from __future__ import annotations

from datetime import UTC

from quarry.v1 import audit_pb2, namespace_pb2, token_pb2

from server.api.convert import duration_seconds, timestamp
from server.domain.namespaces import QuotaChange
from server.domain.tokens import NewToken
from server.model.audit import AuditEvent
from server.model.errors import InvalidArgument
from server.model.identity import Grant, Role, TokenRecord, token_name
from server.model.namespaces import Namespace, Quota, Usage

ROLE_NAMES = {Role.READER: token_pb2.ROLE_READER, Role.WRITER: token_pb2.ROLE_WRITER, Role.ADMIN: token_pb2.ROLE_ADMIN}
ROLES = {number: role for role, number in ROLE_NAMES.items()}


def token(value: TokenRecord) -> token_pb2.Token:
    """The contract's Token (never its secret)."""
    message = token_pb2.Token(
        name=value.name, principal=value.principal, operator=value.operator, creator=value.creator,
        grants=[token_pb2.Grant(namespace=f"namespaces/{g.namespace}", role=ROLE_NAMES[g.role]) for g in value.grants],
        create_time=timestamp(value.create_time), last_use_time=timestamp(value.last_use_time),
        revoke_time=timestamp(value.revoke_time))
    expire_time = timestamp(value.expire_time)
    if expire_time is not None:
        message.expire_time.CopyFrom(expire_time)
    return message


def new_token(message: token_pb2.Token, request_id: str) -> NewToken:
    """The writable fields of a token to issue; INVALID_ARGUMENT for a grant without a role or namespace."""
    grants = []
    for index, grant in enumerate(message.grants):
        prefix, _, namespace = grant.namespace.partition("/")
        if prefix != "namespaces" or not namespace:
            raise InvalidArgument.field(f"token.grants[{index}].namespace", "must be namespaces/{namespace}, got "
                                        f"{grant.namespace!r}", reason="INVALID_GRANTS")
        if grant.role not in ROLES:
            raise InvalidArgument.field(f"token.grants[{index}].role", "must be ROLE_READER, ROLE_WRITER or "
                                                                       "ROLE_ADMIN", reason="INVALID_GRANTS")
        grants.append(Grant(namespace, ROLES[grant.role]))
    which = message.WhichOneof("expiration")
    expire_time = None
    if which == "expire_time":
        try:
            expire_time = message.expire_time.ToDatetime(tzinfo=UTC)
        except (ValueError, OverflowError):
            raise InvalidArgument.field("token.expire_time", "is not a valid time", reason="INVALID_EXPIRY") from None
    return NewToken(principal=message.principal, grants=tuple(grants), operator=message.operator,
                    expire_time=expire_time, ttl_seconds=duration_seconds(message.ttl) if which == "ttl" else None,
                    request_id=request_id or None)


def quota(value: Quota) -> namespace_pb2.NamespaceQuota:
    """The contract's NamespaceQuota."""
    return namespace_pb2.NamespaceQuota(max_bytes=value.max_bytes, max_open_uploads=value.max_open_uploads,
                                        max_datasets=value.max_datasets,
                                        requests_per_second=value.requests_per_second)


def quota_from(message: namespace_pb2.NamespaceQuota) -> Quota:
    """Domain quota values from the contract's."""
    return Quota(max_bytes=message.max_bytes, max_open_uploads=message.max_open_uploads,
                 max_datasets=message.max_datasets, requests_per_second=message.requests_per_second)


def quota_change(message: namespace_pb2.Namespace, paths: list[str]) -> QuotaChange:
    """An UpdateNamespace's values and mask."""
    return QuotaChange(quota_from(message.quota), tuple(paths))


def namespace(value: Namespace, usage: Usage | None = None) -> namespace_pb2.Namespace:
    """The contract's Namespace (with its usage when measured)."""
    return namespace_pb2.Namespace(
        name=value.resource_name, quota=quota(value.quota), create_time=timestamp(value.create_time),
        update_time=timestamp(value.update_time), etag=value.etag,
        usage=namespace_pb2.NamespaceUsage(stored_bytes=usage.stored_bytes, open_uploads=usage.open_uploads,
                                           datasets=usage.datasets) if usage is not None else None)


def audit_event(value: AuditEvent) -> audit_pb2.AuditEvent:
    """The contract's AuditEvent."""
    return audit_pb2.AuditEvent(
        name=value.name, event_time=timestamp(value.event_time), principal=value.principal,
        token=token_name(value.token_id) if value.token_id else "", namespace=value.namespace,
        method=value.method, resource=value.resource, code=value.code, reason=value.reason,
        request_id=value.request_id, peer=value.peer)

