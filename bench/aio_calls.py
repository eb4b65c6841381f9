"""A grpc.aio client-streaming call that reports the server's status, not grpc.aio's own failed write.

When a server ends a call while the client is still writing to it (a refusal midway, RESOURCE_EXHAUSTED
when the server is busy), grpc.aio may replace the server's status, which has arrived, with its own
INTERNAL "Internal error from Core" for the write that failed. The server's status is the first one the call
settles with: a done-callback sees it before the failed write overwrites it. `finish` raises that one.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

import grpc
from grpc import aio

T = TypeVar("T")
_OWN_FAILURE = "Internal error from Core"


def _now(coroutine: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that completes without waiting (a finished call's status getters do)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("the call has not settled")


def _status_of(call: aio.Call) -> aio.AioRpcError | None:
    code = _now(call.code())
    if code == grpc.StatusCode.OK:
        return None
    return aio.AioRpcError(code, _now(call.initial_metadata()), _now(call.trailing_metadata()), _now(call.details()))


async def finish(call: Any) -> Any:
    """Await a client-streaming call; on failure raise the status the server sent."""
    first: list[aio.AioRpcError | None] = []
    call.add_done_callback(lambda done: first.append(_status_of(done)))
    try:
        return await call
    except aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.INTERNAL and exc.details() == _OWN_FAILURE and first and first[0]:
            raise first[0] from exc
        raise
