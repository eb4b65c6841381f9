"""Tokens: issue (the secret is shown once), list, revoke, and the first operator token of a new deployment.

An admin manages the tokens of the namespaces it administers: it may issue a token whose grants are all on
namespaces where it is admin, and list or revoke a token only when every grant of that token is on such a
namespace. Only an operator issues operator tokens, and revokes them. To anyone else a token it may not
manage does not exist (NOT_FOUND), so ids cannot be probed.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from server.domain.audit import record_in
from server.domain.caller import Caller
from server.domain.identity import Authenticator
from server.domain.listing import PageTokens, page_size
from server.model.errors import FailedPrecondition, InvalidArgument, NotFound
from server.model.identity import (
    TOKEN_ID_PATTERN,
    Grant,
    IssuedToken,
    Role,
    TokenRecord,
    hash_secret,
    new_token_parts,
    token_text,
)
from server.model.names import NAME_PATTERN
from server.model.namespaces import Quota
from server.storage import namespaces as namespaces_repo
from server.storage import tokens as repo
from server.storage.db import Database

log = logging.getLogger(__name__)

MAX_GRANTS = 100
MAX_REQUEST_ID = 128
ALL_NAMESPACES = "namespaces/-"
_PRINCIPAL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9@._:+-]{0,127}$")


@dataclass(frozen=True)
class NewToken:
    """What a client asks for when it issues a token."""

    principal: str
    grants: tuple[Grant, ...] = ()
    operator: bool = False
    expire_time: datetime | None = None
    ttl_seconds: float | None = None
    request_id: str | None = None

    def validated(self, now: datetime) -> tuple[NewToken, datetime | None]:
        """Check every field; return the token and its expiry time; INVALID_ARGUMENT naming the bad field."""
        if not _PRINCIPAL.match(self.principal):
            raise InvalidArgument.field("token.principal", "1-128 characters: letters, digits and @._:+-, starting "
                                                           "with a letter or digit", reason="INVALID_PRINCIPAL")
        if not self.grants and not self.operator:
            raise InvalidArgument.field("token.grants", "a token needs at least one grant (or to be an operator's)",
                                        reason="INVALID_GRANTS")
        if len(self.grants) > MAX_GRANTS:
            raise InvalidArgument.field("token.grants", f"at most {MAX_GRANTS} grants", reason="INVALID_GRANTS")
        seen = set()
        for index, grant in enumerate(self.grants):
            if not NAME_PATTERN.match(grant.namespace):
                raise InvalidArgument.field(f"token.grants[{index}].namespace",
                                            f"invalid namespace {grant.namespace!r}", reason="INVALID_GRANTS")
            if grant.namespace in seen:
                raise InvalidArgument.field(f"token.grants[{index}].namespace",
                                            f"namespace {grant.namespace!r} is granted twice", reason="INVALID_GRANTS")
            seen.add(grant.namespace)
        if self.request_id is not None and not 1 <= len(self.request_id) <= MAX_REQUEST_ID:
            raise InvalidArgument.field("request_id", f"must have 1-{MAX_REQUEST_ID} characters",
                                        reason="INVALID_REQUEST_ID")
        expire = self.expire_time
        if self.ttl_seconds is not None:
            if self.ttl_seconds <= 0 or self.ttl_seconds > 100 * 365 * 86400:
                raise InvalidArgument.field("token.ttl", "must be positive and at most 100 years",
                                            reason="INVALID_EXPIRY")
            expire = now + timedelta(seconds=self.ttl_seconds)
        if expire is not None and expire <= now:
            raise InvalidArgument.field("token.expire_time", f"{expire.isoformat()} is not in the future",
                                        reason="INVALID_EXPIRY")
        return self, expire


def parse_token_name(name: str, field: str = "name") -> str:
    """The id of `tokens/{id}`."""
    prefix, _, token_id = name.partition("/")
    if prefix != "tokens" or not TOKEN_ID_PATTERN.match(token_id):
        raise InvalidArgument.field(field, f"must be tokens/{{id}} (16 hex digits), got {name!r}",
                                    reason="INVALID_NAME")
    return token_id


class Tokens:
    """The token use cases."""

    def __init__(self, db: Database, authenticator: Authenticator, page_tokens: PageTokens,
                 max_page_size: int) -> None:
        self.db = db
        self.authenticator = authenticator
        self._tokens = page_tokens
        self._max_page_size = max_page_size

    async def create(self, caller: Caller, spec: NewToken) -> IssuedToken:
        """Issue a token; a repeated request_id returns the first token, without its secret."""
        spec, expire = spec.validated(datetime.now(UTC))
        if spec.operator:
            caller.require_operator()
        for grant in spec.grants:
            caller.check(grant.namespace, Role.ADMIN)
        if not spec.grants:
            caller.check(caller.namespace, Role.ADMIN)
        token_id, secret = new_token_parts()
        async with self.db.transaction() as connection:
            if spec.request_id is not None:
                earlier = await repo.find_by_request_id(connection, caller.identity, spec.request_id)
                if earlier is not None:
                    await record_in(connection, caller, earlier.name)
                    return IssuedToken(earlier, "")
            ids = await namespaces_repo.ids_of(connection, [g.namespace for g in spec.grants])
            missing = [g.namespace for g in spec.grants if g.namespace not in ids]
            if missing:
                raise NotFound(f"namespace {missing[0]} not found", reason="NAMESPACE_NOT_FOUND",
                               metadata={"namespace": missing[0]})
            record = await repo.insert(
                connection, token_id=token_id, secret_sha256=hash_secret(secret), principal=spec.principal,
                grants=[(ids[g.namespace], g.role) for g in spec.grants], operator=spec.operator,
                creator=caller.identity, expire_time=expire, request_id=spec.request_id)
            if record is None:  # a concurrent twin with the same request_id won
                earlier = await repo.find_by_request_id(connection, caller.identity, spec.request_id or "")
                assert earlier is not None
                return IssuedToken(earlier, "")
            await record_in(connection, caller, record.name)
        log.info("token issued", extra={"token": record.name, "principal": record.principal,
                                        "by": caller.identity, "operator": record.operator})
        return IssuedToken(record, token_text(token_id, secret))

    async def list(self, caller: Caller, parent: str, size: int, token: str,
                   show_revoked: bool) -> tuple[list[TokenRecord], str]:
        """A page of the tokens with a grant on one namespace (admins of it), or of every token
        ("namespaces/-", operators only), newest first."""
        namespace_id = None
        if parent == ALL_NAMESPACES:
            caller.require_operator()
        else:
            namespace = caller.parent(parent)
            async with self.db.connection() as connection:
                namespace_id = await namespaces_repo.find_id(connection, namespace)
            if namespace_id is None:
                return [], ""
        limit = page_size(size, self._max_page_size)
        request = (parent or caller.namespace, show_revoked)
        position = self._tokens.decode(token, request)
        after = None
        if position is not None:
            try:
                after = (datetime.fromisoformat(position[0]), str(position[1]))
            except (ValueError, IndexError, TypeError):
                raise InvalidArgument.field("page_token", "invalid page token", reason="INVALID_PAGE_TOKEN") from None
        async with self.db.connection() as connection:
            found = await repo.page(connection, namespace_id=namespace_id, show_revoked=show_revoked, after=after,
                                    limit=limit + 1)
        page, more = found[:limit], len(found) > limit
        next_token = self._tokens.encode([page[-1].create_time.isoformat(), page[-1].id], request) if more else ""
        # A token that also grants a namespace the caller does not administer is not the caller's to see.
        return [record for record in page if _manages(caller, record)], next_token

    async def revoke(self, caller: Caller, name: str) -> TokenRecord:
        """Revoke a token the caller manages, effective on every replica at once; revoking again changes nothing."""
        token_id = parse_token_name(name)
        caller.check(caller.namespace)  # an admin where it acts, first: others learn nothing about tokens
        async with self.db.transaction() as connection:
            record = await repo.get(connection, token_id)
            if record is None or not _manages(caller, record):
                raise NotFound(f"token {name} not found", reason="TOKEN_NOT_FOUND")
            await repo.revoke(connection, token_id)
            await record_in(connection, caller, record.name)
            revoked = await repo.get(connection, token_id)
        assert revoked is not None
        self.authenticator.forget(token_id)
        log.info("token revoked", extra={"token": record.name, "by": caller.identity})
        return revoked


def _manages(caller: Caller, record: TokenRecord) -> bool:
    """Whether the caller may see and revoke `record`."""
    if caller.principal.operator:
        return True
    if record.operator or not record.grants:
        return False
    return all(caller.principal.role_in(g.namespace) == Role.ADMIN for g in record.grants)


async def bootstrap(db: Database, principal: str, namespace: str) -> IssuedToken:
    """The first operator token of a deployment, and namespace `namespace` if missing; FAILED_PRECONDITION
    (ALREADY_BOOTSTRAPPED) when a live operator token exists."""
    spec, _ = NewToken(principal, operator=True).validated(datetime.now(UTC))
    token_id, secret = new_token_parts()
    async with db.transaction() as connection:
        await repo.lock_bootstrap(connection)
        if await repo.live_operator_exists(connection):
            raise FailedPrecondition("an operator token exists already; issue more with `quarry tokens create` "
                                     "using it", reason="ALREADY_BOOTSTRAPPED")
        if await namespaces_repo.find_id(connection, namespace) is None:
            await namespaces_repo.insert(connection, namespace, Quota(), None)
        record = await repo.insert(connection, token_id=token_id, secret_sha256=hash_secret(secret),
                                   principal=spec.principal, grants=[], operator=True, creator="bootstrap",
                                   expire_time=None, request_id=None)
    assert record is not None
    log.info("operator token bootstrapped", extra={"token": record.name, "principal": principal})
    return IssuedToken(record, token_text(token_id, secret))
