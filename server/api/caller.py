"""The gRPC side of admission: read a call's credentials off its metadata, and hand servicers its caller.

The interceptor (`server/api/interceptors.py`) admits every call through the domain's `Admission`, the one
place a caller is resolved for every protocol, and keeps the Caller in a context variable for the length
of the call; servicers read it with `CallerResolver`. Nothing here decides anything.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable

from grpc import aio

from server.domain.admission import Credentials
from server.domain.caller import Caller
from server.model.errors import Internal

AUTHORIZATION_METADATA = "authorization"
NAMESPACE_METADATA = "x-quarry-namespace"

CURRENT_CALLER: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("quarry_caller", default=None)


def credentials(metadata: Iterable[tuple[str, str | bytes]] | None) -> Credentials:
    """The `authorization` and `x-quarry-namespace` values of a call's metadata (the first of each)."""
    found: dict[str, str] = {}
    for key, value in metadata or ():
        if key in (AUTHORIZATION_METADATA, NAMESPACE_METADATA) and key not in found and isinstance(value, str):
            found[key] = value
    return Credentials(found.get(AUTHORIZATION_METADATA), found.get(NAMESPACE_METADATA))


class CallerResolver:
    """What servicers call to learn who is calling: the Caller admission resolved for this call."""

    def __call__(self, context: aio.ServicerContext) -> Caller:
        caller = CURRENT_CALLER.get()
        if caller is None:
            # Only a method that needs no token has no caller, and such a method never asks for one.
            raise Internal("no caller was admitted for this call", reason="NO_CALLER")
        return caller
