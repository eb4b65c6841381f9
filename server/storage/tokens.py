"""Tokens and their grants in Postgres: rows leave as `TokenRecord` models.

A token row never changes after insertion except its revoke_time (once, which NOTIFYs `quarry_token` so
every replica drops its cached copy) and its last_use_time (which does not notify).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from server.model.identity import Grant, Role, TokenRecord

_SELECT = """
    SELECT t.id, t.secret_sha256, t.principal, t.operator, t.creator, t.create_time, t.expire_time,
           t.revoke_time, t.last_use_time,
           coalesce((SELECT array_agg(n.name || ':' || g.role ORDER BY g.position)
                     FROM token_grants g JOIN namespaces n ON n.id = g.namespace_id
                     WHERE g.token_id = t.id), '{}') AS grants
    FROM tokens t"""


def _grants(values: Sequence[str]) -> tuple[Grant, ...]:
    grants = []
    for value in values:
        namespace, _, role = value.rpartition(":")
        grants.append(Grant(namespace, Role.parse(role)))
    return tuple(grants)


def _token(row: asyncpg.Record) -> TokenRecord:
    return TokenRecord(id=row["id"], secret_sha256=row["secret_sha256"], principal=row["principal"],
                       grants=_grants(row["grants"]), operator=row["operator"], creator=row["creator"],
                       create_time=row["create_time"], expire_time=row["expire_time"],
                       revoke_time=row["revoke_time"], last_use_time=row["last_use_time"])


async def insert(connection: asyncpg.Connection, *, token_id: str, secret_sha256: str, principal: str,
                 grants: Sequence[tuple[uuid.UUID, Role]], operator: bool, creator: str,
                 expire_time: datetime | None, request_id: str | None) -> TokenRecord | None:
    """Insert a token and its grants; None when (creator, request_id) was used before."""
    inserted = await connection.fetchval(
        """INSERT INTO tokens (id, secret_sha256, principal, operator, creator, expire_time, request_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (creator, request_id) WHERE request_id IS NOT NULL DO NOTHING RETURNING id""",
        token_id, secret_sha256, principal, operator, creator, expire_time, request_id)
    if inserted is None:
        return None
    await connection.executemany(
        "INSERT INTO token_grants (token_id, position, namespace_id, role) VALUES ($1, $2, $3, $4)",
        [(token_id, position, namespace_id, role.label) for position, (namespace_id, role) in enumerate(grants)])
    return await get(connection, token_id)


async def get(connection: asyncpg.Connection, token_id: str) -> TokenRecord | None:
    """A token by id."""
    row = await connection.fetchrow(_SELECT + " WHERE t.id = $1", token_id)
    return _token(row) if row is not None else None


async def find_by_request_id(connection: asyncpg.Connection, creator: str, request_id: str) -> TokenRecord | None:
    """The token `creator` issued under `request_id`."""
    row = await connection.fetchrow(_SELECT + " WHERE t.creator = $1 AND t.request_id = $2", creator, request_id)
    return _token(row) if row is not None else None


async def page(connection: asyncpg.Connection, *, namespace_id: uuid.UUID | None, show_revoked: bool,
               after: tuple[datetime, str] | None, limit: int) -> list[TokenRecord]:
    """Tokens newest first: those with a grant on `namespace_id` (every token when None)."""
    conditions: list[str] = []
    args: list[object] = []
    if namespace_id is not None:
        args.append(namespace_id)
        conditions.append(f"EXISTS (SELECT 1 FROM token_grants g WHERE g.token_id = t.id "
                          f"AND g.namespace_id = ${len(args)})")
    if not show_revoked:
        conditions.append("t.revoke_time IS NULL")
    if after is not None:
        args += [after[0], after[1]]
        conditions.append(f"(t.create_time, t.id) < (${len(args) - 1}, ${len(args)})")
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    args.append(limit)
    rows = await connection.fetch(_SELECT + where + f" ORDER BY t.create_time DESC, t.id DESC LIMIT ${len(args)}",
                                  *args)
    return [_token(row) for row in rows]


async def revoke(connection: asyncpg.Connection, token_id: str) -> bool:
    """Revoke a token now; False when it was revoked before."""
    result = await connection.execute(
        "UPDATE tokens SET revoke_time = now() WHERE id = $1 AND revoke_time IS NULL", token_id)
    return result.endswith(" 1")


async def touch(connection: asyncpg.Connection, used: dict[str, datetime]) -> None:
    """Record when tokens were last used (never moving a time backwards)."""
    await connection.executemany(
        """UPDATE tokens SET last_use_time = $2
           WHERE id = $1 AND (last_use_time IS NULL OR last_use_time < $2)""", list(used.items()))


async def live_operator_exists(connection: asyncpg.Connection) -> bool:
    """Whether any operator token exists that is neither revoked nor expired."""
    return bool(await connection.fetchval(
        """SELECT EXISTS (SELECT 1 FROM tokens WHERE operator AND revoke_time IS NULL
                          AND (expire_time IS NULL OR expire_time > now()))"""))


async def lock_bootstrap(connection: asyncpg.Connection) -> None:
    """Serialise bootstraps until the transaction ends, so two at once cannot both issue a first operator."""
    await connection.execute("LOCK TABLE tokens IN SHARE ROW EXCLUSIVE MODE")
