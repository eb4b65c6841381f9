"""Resolve the caller of an RPC. Token authentication plugs in here, and only here."""

from __future__ import annotations

from grpc import aio

from server.domain.caller import Caller
from server.model.names import validate_namespace

NAMESPACE_METADATA = "x-quarry-namespace"


class CallerResolver:
    """Caller from call metadata: `x-quarry-namespace`, else the configured default namespace."""

    def __init__(self, default_namespace: str) -> None:
        self.default_namespace = default_namespace

    def __call__(self, context: aio.ServicerContext) -> Caller:
        metadata = dict(context.invocation_metadata() or ())
        namespace = metadata.get(NAMESPACE_METADATA) or self.default_namespace
        return Caller(namespace=validate_namespace(namespace), identity=f"namespace:{namespace}")
