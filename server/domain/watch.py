"""Follow a row's state changes: the row now, then at every change announced over LISTEN/NOTIFY, until a final
state. WatchUpload and WatchVersion are this, for an upload and for a version."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from typing import TypeVar

from server.storage.notifications import RESYNC, NotificationHub

T = TypeVar("T")


async def follow(hub: NotificationHub, channel: str, key: str, read: Callable[[], Awaitable[T | None]],
                 state_of: Callable[[T], str], with_state: Callable[[T, str], T],
                 final: Collection[str]) -> AsyncIterator[T]:
    """Yield the row as it is now, then once per announced state change, until a state in `final` (or the
    row is gone)."""
    async with hub.subscribe(channel, key) as changes:
        # Read after subscribing, so no change between the read and the subscription is missed.
        current = await read()
        if current is None:
            return
        yield current
        seen = state_of(current)
        while seen not in final:
            announced = await changes.get()
            current = await read()
            if current is None:
                return
            # Each state is reported as it was announced, even if the row has moved on since.
            state = state_of(current) if announced == RESYNC else announced
            if state != seen:
                seen = state
                yield with_state(current, state)
