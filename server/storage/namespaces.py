"""Namespaces and datasets as upload targets: found or created on first use."""

from __future__ import annotations

import uuid

import asyncpg


async def find_id(connection: asyncpg.Connection, name: str) -> uuid.UUID | None:
    """The id of namespace `name`, or None if it was never used."""
    found: uuid.UUID | None = await connection.fetchval("SELECT id FROM namespaces WHERE name = $1", name)
    return found


async def ensure_namespace(connection: asyncpg.Connection, name: str) -> uuid.UUID:
    """The id of namespace `name`, created if new."""
    found = await find_id(connection, name)
    if found is not None:
        return found
    await connection.execute("INSERT INTO namespaces (name) VALUES ($1) ON CONFLICT (name) DO NOTHING", name)
    created = await find_id(connection, name)
    assert created is not None
    return created


async def lock_namespace(connection: asyncpg.Connection, namespace_id: uuid.UUID) -> None:
    """Serialise quota checks of one namespace until the transaction ends."""
    await connection.execute("SELECT 1 FROM namespaces WHERE id = $1 FOR UPDATE", namespace_id)


async def ensure_draft_dataset(connection: asyncpg.Connection, namespace_id: uuid.UUID, name: str) -> uuid.UUID:
    """The id of the live dataset `name`, created as DRAFT if there is none."""
    query = "SELECT id FROM datasets WHERE namespace_id = $1 AND name = $2 AND state <> 'DELETED'"
    found = await connection.fetchval(query, namespace_id, name)
    if found is not None:
        return found
    await connection.execute(
        """INSERT INTO datasets (namespace_id, name) VALUES ($1, $2)
           ON CONFLICT (namespace_id, name) WHERE state <> 'DELETED' DO NOTHING""", namespace_id, name)
    return await connection.fetchval(query, namespace_id, name)


async def page_token_key(connection: asyncpg.Connection) -> bytes:
    """The key that signs page tokens, shared by every replica."""
    value = await connection.fetchval("SELECT value FROM server_secrets WHERE name = 'page_token_key'")
    return bytes.fromhex(value)
