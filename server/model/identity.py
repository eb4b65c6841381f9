"""Who a caller is: tokens, principals, roles and grants.

A token is `qk_<id>_<secret>`: the id (16 hex digits) names it (`tokens/{id}`) and is stored as it is; the
secret (32 random bytes, url-safe base64) is stored only as its SHA-256. A high-entropy secret needs no slow
hash: nobody can guess it, so a fast hash only has to be one-way.

Roles rise per namespace: reader < writer < admin. An operator holds every role in every namespace and
may create namespaces.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum, StrEnum

TOKEN_PREFIX = "qk"
SECRET_BYTES = 32
_TOKEN = re.compile(r"^qk_([0-9a-f]{16})_([A-Za-z0-9_-]{43,128})$")
TOKEN_ID_PATTERN = re.compile(r"^[0-9a-f]{16}$")


class Role(IntEnum):
    """A role in one namespace; a higher role includes the lower ones."""

    READER = 1
    WRITER = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        """The lower-case name users see and type ("reader")."""
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Role:
        """A role from its name (any case); ValueError for anything else."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown role {text!r}; use reader, writer or admin") from None


class Access(StrEnum):
    """What an RPC needs from its caller (see `server/domain/access.py`, the one table of them)."""

    NONE = "none"  # no token at all: health probes, capabilities
    AUTHENTICATED = "authenticated"  # any valid token: reflection, listing one's own namespaces
    READER = "reader"
    WRITER = "writer"
    ADMIN = "admin"
    OPERATOR = "operator"

    @property
    def role(self) -> Role | None:
        """The namespace role this access needs, for the three namespace-scoped ones."""
        return {Access.READER: Role.READER, Access.WRITER: Role.WRITER, Access.ADMIN: Role.ADMIN}.get(self)


@dataclass(frozen=True)
class Grant:
    """A role in one namespace."""

    namespace: str
    role: Role


@dataclass(frozen=True)
class Principal:
    """Who is calling: a name, the token it presented, and what that token grants."""

    name: str
    token_id: str | None = None
    grants: tuple[Grant, ...] = ()
    operator: bool = False

    def role_in(self, namespace: str) -> Role | None:
        """The role held in `namespace` (an operator's is admin everywhere), or None."""
        if self.operator:
            return Role.ADMIN
        for grant in self.grants:
            if grant.namespace == namespace:
                return grant.role
        return None

    @property
    def default_namespace(self) -> str | None:
        """The namespace a call acts in when it names none: the first grant's."""
        return self.grants[0].namespace if self.grants else None


# In-process callers (the worker, tests that drive use cases directly) act as this operator; the API never
# does: it resolves every caller from the call's token (or, with QUARRY_AUTH_MODE=none, from the header).
SYSTEM = Principal("system", operator=True)


@dataclass(frozen=True)
class TokenRecord:
    """A stored token: everything but its secret, of which only the SHA-256 is kept."""

    id: str
    secret_sha256: str
    principal: str
    grants: tuple[Grant, ...]
    operator: bool
    creator: str
    create_time: datetime
    expire_time: datetime | None = None
    revoke_time: datetime | None = None
    last_use_time: datetime | None = None

    @property
    def name(self) -> str:
        """The resource name, `tokens/{id}`."""
        return token_name(self.id)

    def matches(self, secret: str) -> bool:
        """Whether `secret` is this token's, compared in constant time."""
        return hmac.compare_digest(hash_secret(secret), self.secret_sha256)

    def principal_of(self) -> Principal:
        """The principal a call presenting this token acts as."""
        return Principal(self.principal, self.id, self.grants, self.operator)


@dataclass(frozen=True)
class IssuedToken:
    """A new token: its record, and the full token text, shown once and never stored."""

    record: TokenRecord
    secret: str = field(repr=False)


def hash_secret(secret: str) -> str:
    """The stored form of a token's secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token_parts() -> tuple[str, str]:
    """A fresh (id, secret)."""
    return secrets.token_hex(8), secrets.token_urlsafe(SECRET_BYTES)


def token_text(token_id: str, secret: str) -> str:
    """The token a client sends: `qk_<id>_<secret>`."""
    return f"{TOKEN_PREFIX}_{token_id}_{secret}"


def parse_token(text: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed token, or None."""
    match = _TOKEN.match(text)
    return (match.group(1), match.group(2)) if match else None


def token_name(token_id: str) -> str:
    """The resource name of a token."""
    return f"tokens/{token_id}"


def redact_token(text: str) -> str:
    """`qk_<id>_***`: a token as logs and errors may show it."""
    parsed = parse_token(text)
    return f"{TOKEN_PREFIX}_{parsed[0]}_***" if parsed else "***"
