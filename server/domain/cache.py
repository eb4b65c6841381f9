"""Rows cached per replica and dropped the moment Postgres announces they changed (LISTEN/NOTIFY).

An entry is trusted for at most `ttl` seconds, and only while the notification listener is connected: a
replica that cannot hear changes reads Postgres every time. A load that started before a change was announced
is not stored (the generation moved on meanwhile), so a revocation can never be undone by a slow read.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from server.storage.notifications import RESYNC, NotificationHub

V = TypeVar("V")


class NotifiedCache(Generic[V]):
    """Values by string key (the NOTIFY payload that invalidates them), loaded on a miss."""

    def __init__(self, hub: NotificationHub, channel: str, load: Callable[[str], Awaitable[V | None]], *,
                 ttl: float, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._hub = hub
        self._load = load
        self._ttl = ttl
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, tuple[V, float]] = {}
        self._generation = 0
        hub.listen(channel, self._invalidate)

    def _invalidate(self, key: str) -> None:
        self._generation += 1
        if key == RESYNC:
            self._entries.clear()
        else:
            self._entries.pop(key, None)

    async def get(self, key: str) -> V | None:
        """The value of `key` (None when there is none), from the cache when it can be trusted."""
        now = self._clock()
        if self._hub.connected:
            entry = self._entries.get(key)
            if entry is not None and now - entry[1] < self._ttl:
                return entry[0]
        generation = self._generation
        value = await self._load(key)
        if value is not None and generation == self._generation and self._hub.connected:
            if len(self._entries) >= self._max_entries:
                self._entries.clear()  # a crude bound: a flood of distinct keys costs reloads, never memory
            self._entries[key] = (value, now)
        return value

    def drop(self, key: str) -> None:
        """Forget `key` in this replica at once (others hear the NOTIFY)."""
        self._invalidate(key)
