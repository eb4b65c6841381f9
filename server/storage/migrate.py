"""The migration runner: apply each `migrations/NNNN_*.sql` once, in order.

Each file runs in its own transaction and is recorded in `schema_migrations` with a checksum. The whole
run holds a session advisory lock, so two processes starting at once apply each file exactly once; the
second waits, then finds nothing to do. A file edited after it was applied is refused.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

log = logging.getLogger(__name__)

LOCK_KEY = 0x5155_4152_5259  # "QUARRY": one lock for every Quarry process sharing the database
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(Exception):
    """The migration files or the recorded history are inconsistent."""


@dataclass(frozen=True)
class Migration:
    """One SQL file."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the file's text."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover() -> list[Migration]:
    """The migration files, ordered; refuses gaps, duplicates and stray names."""
    found: list[Migration] = []
    for entry in resources.files("migrations").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _NAME.match(entry.name)
        if match is None:
            raise MigrationError(f"migration file {entry.name!r} is not named NNNN_name.sql")
        found.append(Migration(int(match.group(1)), entry.name, entry.read_text()))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise MigrationError(f"migration {expected:04d} is missing (found {migration.name})")
    return found


async def migrate(connection: asyncpg.Connection, up_to: int | None = None) -> list[str]:
    """Apply every pending migration (or those numbered up to `up_to`); return the names of those applied now."""
    migrations = [m for m in discover() if up_to is None or m.version <= up_to]
    applied_now: list[str] = []
    await connection.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
    try:
        await connection.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version    integer PRIMARY KEY,
                   name       text NOT NULL,
                   checksum   text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())""")
        recorded = {row["version"]: row for row in await connection.fetch(
            "SELECT version, name, checksum FROM schema_migrations")}
        for migration in migrations:
            row = recorded.get(migration.version)
            if row is not None:
                if row["checksum"] != migration.checksum:
                    raise MigrationError(f"migration {migration.name} changed after it was applied")
                continue
            async with connection.transaction():
                await connection.execute(migration.sql)
                await connection.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version, migration.name, migration.checksum)
            applied_now.append(migration.name)
        newer = sorted(set(recorded) - {m.version for m in discover()})
        if newer:
            # A newer release migrated this database (a rolling upgrade): its migrations are additive.
            log.warning("database has migrations newer than this code", extra={"versions": newer})
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
    return applied_now
