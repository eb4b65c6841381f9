"""Resolve the caller of a call, gRPC or Arrow Flight alike. Token authentication plugs in here, and only here.

Each protocol's adapter hands over the call's headers as (name, value) pairs: the gRPC servicers their
invocation metadata (`__call__`), the Flight middleware its call headers (`of_headers`).
"""

from __future__ import annotations

from collections.abc import Iterable

from grpc import aio

from server.domain.caller import Caller
from server.model.names import validate_namespace

NAMESPACE_METADATA = "x-quarry-namespace"


class CallerResolver:
    """Caller from call headers: `x-quarry-namespace`, else the configured default namespace."""

    def __init__(self, default_namespace: str) -> None:
        self.default_namespace = default_namespace

    def __call__(self, context: aio.ServicerContext) -> Caller:
        return self.of_headers(context.invocation_metadata() or ())

    def of_headers(self, headers: Iterable[tuple[str, str | bytes]]) -> Caller:
        """The caller of a call with these headers (names in lower case; the first value of each counts)."""
        found: dict[str, str] = {}
        for name, value in headers:
            if name not in found and isinstance(value, str):
                found[name] = value
        namespace = found.get(NAMESPACE_METADATA) or self.default_namespace
        return Caller(namespace=validate_namespace(namespace), identity=f"namespace:{namespace}")
