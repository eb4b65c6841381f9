"""Postgres connections: the pool, start-up checks, and translation of driver errors.

Repositories run their SQL inside `translate_errors()`, so callers only ever see domain errors:
a lost connection is Unavailable, a unique violation is AlreadyExists, a serialization failure or
deadlock is Aborted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg

from server.model.errors import Aborted, AlreadyExists, ConfigError, Internal, Unavailable
from server.model.redaction import redact

# A connection, as use cases hold it to pass to repositories inside their transaction. The domain names this
# alias and never asyncpg, so the driver stays a detail of the storage layer.
Connection = asyncpg.Connection

_UNAVAILABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.InterfaceError,
    # What asyncpg raises when the server vanished under a connection between two of its operations (seen with
    # Postgres killed: "cannot switch to state 15; another operation (2) is in progress").
    asyncpg.exceptions.InternalClientError,
)


@contextlib.contextmanager
def translate_errors(what: str = "database") -> Iterator[None]:
    """Turn asyncpg errors into domain errors (by class, never by message text)."""
    try:
        yield
    except asyncpg.exceptions.UniqueViolationError as exc:
        raise AlreadyExists(f"{what} already exists", reason="ALREADY_EXISTS",
                            metadata={"constraint": exc.constraint_name or ""}) from exc
    except (asyncpg.exceptions.SerializationError, asyncpg.exceptions.DeadlockDetectedError,
            asyncpg.exceptions.LockNotAvailableError) as exc:
        raise Aborted(f"concurrent change to {what}; retry", reason="CONCURRENT_CHANGE", retry_after=0.1) from exc
    except _UNAVAILABLE as exc:
        raise Unavailable(f"database unavailable: {type(exc).__name__}", reason="DATABASE_UNAVAILABLE",
                          retry_after=1.0) from exc
    except asyncpg.exceptions.PostgresError as exc:
        raise Internal(f"database error on {what}: {exc.sqlstate}", reason="DATABASE_ERROR") from exc


_CONNECT_ERRORS = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.InvalidCatalogNameError,
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,
    asyncpg.exceptions.InvalidPasswordError,
)


async def _init_connection(connection: asyncpg.Connection) -> None:
    # jsonb columns arrive as Python values, not text.
    await connection.set_type_codec("jsonb", encoder=_json_dumps, decoder=_json_loads, schema="pg_catalog")


async def _release(connection: asyncpg.Connection) -> None:
    """What a connection going back to the pool needs beyond asyncpg's own ROLLBACK of an open transaction: nothing.

    asyncpg's default reset is a second round trip after every use (advisory unlock, CLOSE ALL, UNLISTEN, RESET
    ALL), as costly as a point read. Quarry leaves no session state on a pooled connection: settings are
    transaction-local (`set_config(..., true)`), cursors live in transactions, LISTEN has its own connection,
    and the one session lock (migrations) is released in a `finally` (a connection that fails to release it is
    broken, and asyncpg closes it).
    """


def _json_dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _json_loads(text: str) -> Any:
    return json.loads(text)


async def connect(dsn: str, timeout: float) -> asyncpg.Connection:
    """One connection, retried until `timeout`; ConfigError naming QUARRY_DATABASE_URL if it never answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            connection = await asyncpg.connect(dsn, timeout=max(1.0, min(5.0, timeout)))
            await _init_connection(connection)
            return connection
        except _CONNECT_ERRORS as exc:
            if time.monotonic() >= deadline or isinstance(exc, asyncpg.exceptions.InvalidPasswordError):
                raise ConfigError("QUARRY_DATABASE_URL", redact(f"cannot connect to {dsn}: {_describe(exc)}")) from None
            await asyncio.sleep(0.25)


async def create_pool(dsn: str, timeout: float, max_size: int = 20) -> asyncpg.Pool:
    """The shared pool, opened after one successful connection proves the database answers."""
    probe = await connect(dsn, timeout)
    await probe.close()
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=max_size, init=_init_connection,
                                     reset=_release, command_timeout=60)
    assert pool is not None
    return pool


@contextlib.asynccontextmanager
async def pool_of(dsn: str, timeout: float, max_size: int = 20) -> AsyncIterator[asyncpg.Pool]:
    """`create_pool` as a context manager that closes the pool."""
    pool = await create_pool(dsn, timeout, max_size)
    try:
        yield pool
    finally:
        await pool.close()


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__




class Database:
    """The pool, with transactions whose driver errors arrive as domain errors."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection inside a transaction, committed when the block exits normally."""
        with translate_errors():
            async with self.pool.acquire() as connection, connection.transaction():
                yield connection

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection in autocommit mode."""
        with translate_errors():
            async with self.pool.acquire() as connection:
                yield connection
