"""The audit trail in Postgres: insert, page through, and (the retention sweep only) delete old rows.

The table refuses UPDATE, TRUNCATE, and any DELETE but the sweep's (see migrations/0003_identity.sql).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from server.model.audit import AuditEvent

_COLUMNS = "id, event_time, principal, token_id, namespace, method, resource, code, reason, request_id, peer"


def _event(row: asyncpg.Record) -> AuditEvent:
    return AuditEvent(**dict(row))  # the columns are the model's fields


async def insert(connection: asyncpg.Connection, event: AuditEvent) -> None:
    """Append one event."""
    await connection.execute(
        """INSERT INTO audit_events (principal, token_id, namespace, method, resource, code, reason, request_id, peer)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        event.principal, event.token_id, event.namespace, event.method, event.resource, event.code, event.reason,
        event.request_id, event.peer)


@dataclass(frozen=True)
class AuditQuery:
    """Which events to list: all of one namespace (or every namespace), narrowed by the filter's terms."""

    namespace: str | None = None
    principal: str | None = None
    method: str | None = None  # a full name ("/quarry.v1.DatasetService/DeleteDataset") or a method's ("DeleteDataset")
    times: tuple[tuple[str, datetime], ...] = ()  # (operator: <, <=, > or >=, time) on event_time
    before_id: int | None = None  # keyset: events older than this one


async def page(connection: asyncpg.Connection, query: AuditQuery, limit: int) -> list[AuditEvent]:
    """Events newest first."""
    method = query.method if query.method is None or query.method.startswith("/") else None
    conditions: list[str] = []
    args: list[object] = []
    terms: list[tuple[str, str, object]] = [("namespace", "=", query.namespace), ("principal", "=", query.principal),
                                            ("method", "=", method), ("id", "<", query.before_id)]
    terms += [("event_time", operator, value) for operator, value in query.times]
    for column, operator, value in terms:
        assert operator in ("=", "<", "<=", ">", ">=")
        if value is not None:
            args.append(value)
            conditions.append(f"{column} {operator} ${len(args)}")
    if query.method is not None and method is None:
        args.append("%/" + query.method.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_"))
        conditions.append(f"method LIKE ${len(args)}")
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    args.append(limit)
    rows = await connection.fetch(f"SELECT {_COLUMNS} FROM audit_events{where} ORDER BY id DESC LIMIT ${len(args)}",
                                  *args)
    return [_event(row) for row in rows]


async def delete_older_than(connection: asyncpg.Connection, days: float) -> int:
    """Delete events older than `days` (inside the caller's transaction, which the cut-off is set for)."""
    cutoff = await connection.fetchval("SELECT now() - make_interval(secs => $1)", days * 86400)
    await connection.execute("SELECT set_config('quarry.audit_cutoff', $1, true)", cutoff.isoformat())
    result = await connection.execute("DELETE FROM audit_events WHERE event_time < $1", cutoff)
    return int(result.split()[-1])
