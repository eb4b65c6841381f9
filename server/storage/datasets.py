"""The datasets repository: every SQL statement about datasets.

Functions take the connection of the caller's transaction; rows leave as `Dataset` models. Changes are
compare-and-set on `revision` (`WHERE id = $1 AND revision = $2`), so of two concurrent writers that read
the same revision exactly one wins. Lists are keyset-paged on (order column, id).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from server.model.datasets import Dataset, DatasetRules, DatasetState

_SELECT = """
    SELECT d.*, n.name AS namespace_name, v.number AS version_number
    FROM datasets d
    JOIN namespaces n ON n.id = d.namespace_id
    LEFT JOIN versions v ON v.id = d.current_version_id
"""
_LIVE = "d.state <> 'DELETED'"


def _dataset(row: asyncpg.Record) -> Dataset:
    return Dataset(
        id=row["id"], namespace=row["namespace_name"], namespace_id=row["namespace_id"], name=row["name"],
        description=row["description"], labels=dict(row["labels"]), rules=DatasetRules.from_json(row["rules"]),
        state=DatasetState(row["state"]), current_version_id=row["current_version_id"],
        current_version_number=row["version_number"], revision=row["revision"], create_time=row["create_time"],
        update_time=row["update_time"], delete_time=row["delete_time"],
    )


async def insert(connection: asyncpg.Connection, *, namespace_id: uuid.UUID, name: str, description: str,
                 labels: dict[str, str], rules: DatasetRules, request_id: str | None) -> Dataset | None:
    """Insert a DRAFT dataset; None when a live dataset has the name or the request_id was used before."""
    # No conflict target: both the live-name and the request_id unique index turn a clash into "nothing
    # inserted" (after waiting for a concurrent inserter to commit), and the caller tells which it was.
    dataset_id = await connection.fetchval(
        """INSERT INTO datasets (namespace_id, name, description, labels, rules, request_id)
           VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING id""",
        namespace_id, name, description, labels, rules.to_json(), request_id)
    return None if dataset_id is None else await get(connection, dataset_id)


async def get(connection: asyncpg.Connection, dataset_id: uuid.UUID) -> Dataset | None:
    """One dataset by id, whatever its state."""
    row = await connection.fetchrow(_SELECT + " WHERE d.id = $1", dataset_id)
    return None if row is None else _dataset(row)


async def get_live(connection: asyncpg.Connection, namespace: str, name: str) -> Dataset | None:
    """The live (not DELETED) dataset `name` of a namespace."""
    row = await connection.fetchrow(_SELECT + f" WHERE n.name = $1 AND d.name = $2 AND {_LIVE}", namespace, name)
    return None if row is None else _dataset(row)


async def find_by_request_id(connection: asyncpg.Connection, namespace_id: uuid.UUID,
                             request_id: str) -> Dataset | None:
    """The dataset an earlier create with this request_id made (in whatever state it is now)."""
    row = await connection.fetchrow(_SELECT + " WHERE d.namespace_id = $1 AND d.request_id = $2",
                                    namespace_id, request_id)
    return None if row is None else _dataset(row)


async def update(connection: asyncpg.Connection, dataset_id: uuid.UUID, revision: int, *, description: str,
                 labels: dict[str, str], rules: DatasetRules) -> bool:
    """Set the writable fields if the dataset is live and still at `revision`; False if it moved on."""
    changed = await connection.fetchval(
        """UPDATE datasets SET description = $3, labels = $4, rules = $5, revision = revision + 1,
                                update_time = now()
            WHERE id = $1 AND revision = $2 AND state <> 'DELETED' RETURNING id""",
        dataset_id, revision, description, labels, rules.to_json())
    return changed is not None


async def soft_delete(connection: asyncpg.Connection, dataset_id: uuid.UUID, revision: int) -> bool:
    """Mark the dataset DELETED if it is live and still at `revision`; False if it moved on."""
    changed = await connection.fetchval(
        """UPDATE datasets SET state = 'DELETED', delete_time = now(), update_time = now(), revision = revision + 1
           WHERE id = $1 AND revision = $2 AND state <> 'DELETED' RETURNING id""", dataset_id, revision)
    return changed is not None


async def last_deleted(connection: asyncpg.Connection, namespace: str, name: str, *,
                       for_update: bool = False) -> Dataset | None:
    """The dataset of that name deleted last (not yet purged), locked with `for_update`."""
    dataset_id = await connection.fetchval(
        """SELECT d.id FROM datasets d JOIN namespaces n ON n.id = d.namespace_id
           WHERE n.name = $1 AND d.name = $2 AND d.state = 'DELETED' ORDER BY d.delete_time DESC, d.id LIMIT 1""",
        namespace, name)
    if dataset_id is None:
        return None
    if for_update:
        await connection.execute("SELECT 1 FROM datasets WHERE id = $1 FOR UPDATE", dataset_id)
    return await get(connection, dataset_id)


async def undelete(connection: asyncpg.Connection, dataset_id: uuid.UUID, revision: int) -> bool:
    """A DELETED dataset live again (ACTIVE if it has a current version, else DRAFT) if it is still at `revision`;
    False when a live dataset holds its name (the live-name index) or it moved on."""
    try:
        changed = await connection.fetchval(
            """UPDATE datasets SET state = CASE WHEN current_version_id IS NULL THEN 'DRAFT' ELSE 'ACTIVE' END,
                                   delete_time = NULL, update_time = now(), revision = revision + 1
               WHERE id = $1 AND revision = $2 AND state = 'DELETED'
                 AND NOT EXISTS (SELECT 1 FROM datasets o WHERE o.namespace_id = datasets.namespace_id
                                 AND o.name = datasets.name AND o.state <> 'DELETED')
               RETURNING id""", dataset_id, revision)
    except asyncpg.UniqueViolationError:
        return False  # a live dataset took the name in a transaction that committed meanwhile
    return changed is not None


@dataclass(frozen=True)
class DatasetQuery:
    """What a page of datasets must match, in which order, and where the previous page stopped."""

    namespace: str
    states: Sequence[DatasetState] = ()  # every one must equal the state (terms are joined by AND)
    labels: Sequence[tuple[str, str]] = ()
    names: Sequence[str] = ()
    name_prefixes: Sequence[str] = ()
    show_deleted: bool = False
    order: str = "name"  # "name" or "update_time"
    descending: bool = False
    after: tuple[str | datetime, uuid.UUID] | None = None


async def page(connection: asyncpg.Connection, query: DatasetQuery, limit: int) -> list[Dataset]:
    """Datasets matching `query`, in its order, after its keyset position, at most `limit`."""
    assert query.order in ("name", "update_time")
    conditions = ["n.name = $1"]
    values: list[Any] = [query.namespace]

    def bind(value: Any) -> str:
        values.append(value)
        return f"${len(values)}"

    if query.states:
        conditions.append(f"d.state = ALL({bind([s.value for s in query.states])}::text[])")
    if not query.show_deleted and DatasetState.DELETED not in query.states:
        conditions.append(_LIVE)
    for key, value in query.labels:
        conditions.append(f"d.labels ->> {bind(key)} = {bind(value)}")
    for name in query.names:
        conditions.append(f"d.name = {bind(name)}")
    for prefix in query.name_prefixes:
        conditions.append(f"starts_with(d.name, {bind(prefix)})")
    direction = "DESC" if query.descending else "ASC"
    if query.after is not None:
        comparison = "<" if query.descending else ">"
        conditions.append(f"(d.{query.order}, d.id) {comparison} ({bind(query.after[0])}, {bind(query.after[1])})")
    rows = await connection.fetch(
        _SELECT + f" WHERE {' AND '.join(conditions)} ORDER BY d.{query.order} {direction}, d.id {direction}"
                  f" LIMIT {bind(limit)}", *values)
    return [_dataset(row) for row in rows]
