"""Postgres LISTEN/NOTIFY fan-out: one listening connection per process, any number of subscribers.

Triggers NOTIFY `quarry_upload_state` / `quarry_version_state` with "{row id}:{new state}" on every state
change (see the first migration), so a subscriber in any server replica hears every change, in order. If the listening
connection drops, it reconnects and wakes every subscriber with RESYNC, since changes may have been missed.

Caches listen to whole channels instead (`quarry_token`: a revoked token's id; `quarry_namespace`: a changed
namespace's name; `quarry_dataset`: the resource name of a dataset row inserted, changed or deleted): a
listener gets every payload, and RESYNC after a reconnect. While the connection is down (`connected` is
False) no change can be heard, so caches must not trust what they hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Callable

import asyncpg

from server.model.errors import ConfigError
from server.storage import db

log = logging.getLogger(__name__)

UPLOAD_CHANNEL = "quarry_upload_state"
VERSION_CHANNEL = "quarry_version_state"
TOKEN_CHANNEL = "quarry_token"
NAMESPACE_CHANNEL = "quarry_namespace"
DATASET_CHANNEL = "quarry_dataset"
RESYNC = "*"


class NotificationHub:
    """Subscriptions to NOTIFY payloads on a few channels."""

    def __init__(self, dsn: str,
                 channels: tuple[str, ...] = (UPLOAD_CHANNEL, VERSION_CHANNEL, TOKEN_CHANNEL, NAMESPACE_CHANNEL,
                                                DATASET_CHANNEL),
                 connect_timeout: float = 10.0) -> None:
        self._dsn = dsn
        self._channels = channels
        self._connect_timeout = connect_timeout
        self._subscribers: dict[tuple[str, str], set[asyncio.Queue[str]]] = defaultdict(set)
        self._listeners: dict[str, list[Callable[[str], None]]] = defaultdict(list)
        self._connection: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect and listen; keep reconnecting in the background."""
        await self._connect()
        self._task = asyncio.create_task(self._watchdog(), name="notification-hub")

    async def _connect(self) -> None:
        connection = await db.connect(self._dsn, self._connect_timeout)
        for channel in self._channels:
            await connection.add_listener(channel, self._on_notify)
        self._connection = connection

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(1)
            if self._connection is not None and not self._connection.is_closed():
                continue
            try:
                await self._connect()
            except (ConfigError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("notification listener cannot reconnect: %s", exc)
                continue
            for queues in self._subscribers.values():
                for queue in queues:
                    queue.put_nowait(RESYNC)
            for listeners in self._listeners.values():
                for listener in listeners:
                    listener(RESYNC)

    @property
    def connected(self) -> bool:
        """Whether notifications can be heard right now."""
        return self._connection is not None and not self._connection.is_closed()

    def listen(self, channel: str, listener: Callable[[str], None]) -> None:
        """Call `listener` with every payload on `channel`, and with RESYNC after a reconnect."""
        assert channel in self._channels, f"{channel} is not listened to"
        self._listeners[channel].append(listener)

    def _on_notify(self, connection: object, pid: int, channel: str, payload: str) -> None:
        for listener in self._listeners.get(channel, ()):
            listener(payload)
        key, _, state = payload.partition(":")
        for queue in self._subscribers.get((channel, key), ()):
            queue.put_nowait(state)

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str, key: str) -> AsyncIterator[asyncio.Queue[str]]:
        """A queue that receives the new state whenever row `key` changes state (RESYNC after a reconnect)."""
        queue: asyncio.Queue[str] = asyncio.Queue()
        self._subscribers[(channel, key)].add(queue)
        try:
            yield queue
        finally:
            subscribers = self._subscribers.get((channel, key))
            if subscribers is not None:
                subscribers.discard(queue)
                if not subscribers:
                    del self._subscribers[(channel, key)]

    async def close(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._connection is not None and not self._connection.is_closed():
            await self._connection.close()
