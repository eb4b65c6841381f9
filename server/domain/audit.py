"""The audit trail: who did what, where, and how it ended.

A mutating use case writes its call's row in the same transaction as its change (`record_in`), so the row and
the change commit or vanish together. Every other row is written when the call ends (`conclude`): a
denied call of any RPC, a failed mutating call, and a mutating call whose use case had no transaction of
its own to write in. Rows are never changed; the sweep deletes those past the retention period.

The filter of ListAuditEvents: `principal = "name"`, `method = "DeleteDataset"` (or the full
"/quarry.v1.DatasetService/DeleteDataset"), and `event_time` compared with <, <=, > or >= to an RFC 3339
time, joined by AND.
"""

from __future__ import annotations

import logging
from datetime import datetime

from server.domain.caller import Caller, CallRecord
from server.domain.listing import PageTokens, page_size, parse_filter
from server.model.audit import AuditEvent
from server.model.errors import InvalidArgument, QuarryError
from server.storage import audit as repo
from server.storage.audit import AuditQuery
from server.storage.db import Connection, Database

log = logging.getLogger(__name__)

ALL_NAMESPACES = "-"
DENIED_CODES = frozenset({"UNAUTHENTICATED", "PERMISSION_DENIED"})
FILTER_FIELDS = ("principal", "method", "event_time")


def event_of(call: CallRecord, code: str, reason: str, resource: str = "") -> AuditEvent:
    """The row for a call that ended with `code` (a status code name such as "OK")."""
    return AuditEvent(principal=call.principal, token_id=call.token_id, namespace=call.namespace,
                      method=call.method, resource=resource or call.resource, code=code, reason=reason,
                      request_id=call.request_id, peer=call.peer)


async def record_in(connection: Connection, caller: Caller, resource: str) -> None:
    """Write the call's OK row inside the use case's transaction (nothing for in-process callers, which are no
    RPC)."""
    call = caller.call
    if not call.method or call.audited:
        return  # no RPC, or its row is written (a one-call upload creates, then completes: one call, one row)
    call.resource = resource
    await repo.insert(connection, event_of(call, "OK", ""))
    call.audited = True


class AuditTrail:
    """Writes the rows use cases did not, and reads the trail."""

    def __init__(self, db: Database, page_tokens: PageTokens, max_page_size: int) -> None:
        self.db = db
        self._tokens = page_tokens
        self._max_page_size = max_page_size

    @staticmethod
    def needs_row(call: CallRecord, code: str) -> bool:
        """Whether a call that ended with `code` still needs its audit row: a mutating call its use case did not
        record, and any call refused for who made it. Reads that succeed or fail on their own need none."""
        if code == "OK":
            return call.mutating and not call.audited
        return call.mutating or code in DENIED_CODES

    async def conclude(self, call: CallRecord, code: str, reason: str) -> None:
        """At the end of a call: the row its use case did not write, if it needs one. A failure to write is
        logged and does not change the call's outcome."""
        if not self.needs_row(call, code):
            return
        try:
            async with self.db.connection() as connection:
                await repo.insert(connection, event_of(call, code, reason))
        except QuarryError as exc:
            log.error("could not write an audit event", extra={"method": call.method, "code": code,
                                                               "error": str(exc)})

    async def list(self, caller: Caller, parent: str, filter_text: str, size: int,
                   token: str) -> tuple[list[AuditEvent], str]:
        """A page of events, newest first: one namespace's (admin), or every namespace's ("namespaces/-",
        operators only)."""
        if parent == f"namespaces/{ALL_NAMESPACES}":
            caller.require_operator()
            namespace = None
        else:
            namespace = caller.parent(parent)
        limit = page_size(size, self._max_page_size)
        query = _query(namespace, filter_text)
        request = (namespace or ALL_NAMESPACES, filter_text.strip())
        position = self._tokens.decode(token, request)
        if position is not None:
            if len(position) != 1 or not isinstance(position[0], int):
                raise InvalidArgument.field("page_token", "invalid page token", reason="INVALID_PAGE_TOKEN")
            query = AuditQuery(**{**vars(query), "before_id": position[0]})
        async with self.db.connection() as connection:
            found = await repo.page(connection, query, limit + 1)
        page, more = found[:limit], len(found) > limit
        return page, self._tokens.encode([page[-1].id], request) if more else ""

    async def sweep(self, retention_days: float) -> int:
        """Delete the events older than the retention period; how many went."""
        async with self.db.transaction() as connection:
            return await repo.delete_older_than(connection, retention_days)


def _query(namespace: str | None, text: str) -> AuditQuery:
    principal = method = None
    times: list[tuple[str, datetime]] = []
    for term in parse_filter(text, FILTER_FIELDS, comparable=("event_time",)):
        if term.field == "principal":
            principal = term.value
        elif term.field == "method":
            method = term.value
        else:
            times.append((term.operator if term.operator != "=" else ">=", _time(term.value)))
            if term.operator == "=":
                times.append(("<=", _time(term.value)))
    return AuditQuery(namespace=namespace, principal=principal, method=method, times=tuple(times))


def _time(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidArgument.field("filter", f"event_time needs an RFC 3339 time such as 2025-01-31T12:00:00Z; "
                                              f"got {value!r}", reason="INVALID_FILTER") from None
    if parsed.tzinfo is None:
        raise InvalidArgument.field("filter", f"event_time {value!r} has no time zone; add Z or an offset",
                                    reason="INVALID_FILTER")
    return parsed
