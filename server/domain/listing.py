"""List calls: the filter language, page sizes and signed page tokens.

Filters are terms joined by AND: `field = value`, where value is a bare word or a "quoted string"; a
trailing `*` in a quoted value of `name` means "starts with". Each List call names the fields it knows;
any other gets INVALID_ARGUMENT.

A page token is the keyset position after the last item, plus a hash of the request that produced it,
signed with a key every replica shares: a tampered token, or one replayed with another filter, is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from server.model.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
_TERM = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_.\-]+)?)\s*(=|!=|<|>|<=|>=|:)\s*'
                   r'("(?:[^"\\]|\\.)*"|[^\s"]+)\s*')


@dataclass(frozen=True)
class Term:
    """One `field = value` condition."""

    field: str
    value: str
    operator: str = "="


def parse_filter(text: str, allowed: Sequence[str], comparable: Sequence[str] = ()) -> list[Term]:
    """Parse a filter; `allowed` lists field names (a name ending in "." allows any key under it), and the fields
    in `comparable` also take <, <=, > and >=."""
    text = text.strip()
    if not text:
        return []
    terms: list[Term] = []
    for raw in re.split(r"\s+AND\s+", text):
        match = _TERM.fullmatch(raw)
        if match is None:
            raise InvalidArgument.field("filter", f"cannot parse {raw.strip()!r}; write terms like "
                                                  "`field = value` joined by AND", reason="INVALID_FILTER")
        field, operator, value = match.groups()
        if not any(field == name or (name.endswith(".") and field.startswith(name) and len(field) > len(name))
                   for name in allowed):
            raise InvalidArgument.field("filter", f"unknown filter field {field!r}; known: {', '.join(allowed)}",
                                        reason="INVALID_FILTER")
        if operator != "=" and not (field in comparable and operator in ("<", "<=", ">", ">=")):
            raise InvalidArgument.field("filter", f"operator {operator!r} is not supported on {field}; use =",
                                        reason="INVALID_FILTER")
        if value.startswith('"'):
            try:
                value = json.loads(value)
            except ValueError:
                raise InvalidArgument.field("filter", f"bad quoted value {value}", reason="INVALID_FILTER") from None
        terms.append(Term(field, value, operator))
    return terms


def page_size(requested: int, maximum: int) -> int:
    """The page size to use: 0 means the default, above the maximum means the maximum."""
    if requested < 0:
        raise InvalidArgument.field("page_size", "must not be negative", reason="INVALID_PAGE_SIZE")
    return min(requested or DEFAULT_PAGE_SIZE, maximum)


class PageTokens:
    """Signs and checks page tokens with a key shared by every replica."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    @staticmethod
    def _request_hash(request: Sequence[Any]) -> str:
        return hashlib.sha256(json.dumps(list(request), default=str).encode()).hexdigest()[:16]

    def encode(self, position: Sequence[Any], request: Sequence[Any]) -> str:
        """A token for the page after `position`, valid only for the same `request` (parent, filter, order)."""
        body = json.dumps({"p": list(position), "r": self._request_hash(request)}, default=str,
                          separators=(",", ":")).encode()
        signature = hmac.new(self._key, body, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(body + signature).decode().rstrip("=")

    def decode(self, token: str, request: Sequence[Any]) -> list[Any] | None:
        """The position a token carries; None for an empty token; INVALID_ARGUMENT when bad or tampered."""
        if not token:
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            body, signature = raw[:-16], raw[-16:]
            if not hmac.compare_digest(signature, hmac.new(self._key, body, hashlib.sha256).digest()[:16]):
                raise ValueError("bad signature")
            payload = json.loads(body)
            position = payload["p"]
            if not isinstance(position, list):
                raise ValueError("bad position")
        except (ValueError, KeyError, TypeError):
            raise InvalidArgument.field("page_token", "invalid or tampered page token",
                                        reason="INVALID_PAGE_TOKEN") from None
        if payload.get("r") != self._request_hash(request):
            raise InvalidArgument.field("page_token", "page token was issued for a different request "
                                                      "(parent, filter or order changed)",
                                        reason="INVALID_PAGE_TOKEN")
        return position

    def decode_time_id(self, token: str, request: Sequence[Any]) -> tuple[datetime, uuid.UUID] | None:
        """A (time, id) keyset position (newest-first lists), or None for the first page."""
        position = self.decode(token, request)
        if position is None:
            return None
        try:
            return datetime.fromisoformat(position[0]), uuid.UUID(position[1])
        except (ValueError, IndexError, TypeError):
            raise InvalidArgument.field("page_token", "invalid page token", reason="INVALID_PAGE_TOKEN") from None

    def encode_time_id(self, time: datetime, item_id: uuid.UUID, request: Sequence[Any]) -> str:
        """The token for the page after the item at (time, id)."""
        return self.encode([time.isoformat(), str(item_id)], request)
