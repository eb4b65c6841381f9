"""The admission guards that fail closed: a method without an access rule, a handler that never checked its
caller's role, a servicer asking for a caller nobody admitted, and a method nobody implemented."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio

from server.api.caller import CallerResolver
from server.api.interceptors import AdmittingServer, _guard
from server.domain.access import RPC_RULES
from server.domain.caller import CallRecord
from server.model.errors import Internal
from tests.support import error_info


@pytest.fixture
async def stray_server() -> AsyncIterator[str]:
    """A server whose methods, /stray.v1.Stray/Call (a generic handler) and /stray.v1.Registered/Call (a
    registered one), are in no access table (admission is never reached)."""
    server = aio.server()
    admitting = AdmittingServer(server, None)  # type: ignore[arg-type]

    async def call(request: bytes, context: aio.ServicerContext) -> bytes:
        return request

    handler = grpc.unary_unary_rpc_method_handler(call, request_deserializer=None, response_serializer=None)
    admitting.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("stray.v1.Stray", {"Call": handler})])
    admitting.add_registered_method_handlers("stray.v1.Registered", {"Call": handler})
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(0)


@pytest.mark.parametrize("method", ["/stray.v1.Stray/Call", "/stray.v1.Registered/Call"])
async def test_a_method_without_an_access_rule_is_refused(stray_server: str, method: str) -> None:
    assert method not in RPC_RULES
    async with aio.insecure_channel(stray_server) as channel:
        with pytest.raises(aio.AioRpcError) as refused:
            await channel.unary_unary(method, _registered_method=True)(b"x")
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(refused.value)[0] == "NO_ACCESS_RULE"


def test_a_namespaced_method_that_checked_no_role_fails_closed() -> None:
    rule = RPC_RULES["/quarry.v1.DatasetService/GetDataset"]
    with pytest.raises(Internal) as unchecked:
        _guard(rule, CallRecord(method="/quarry.v1.DatasetService/GetDataset"))
    assert unchecked.value.reason == "AUTHORIZATION_NOT_CHECKED"
    _guard(rule, CallRecord(checked=True))  # checked: fine
    _guard(RPC_RULES["/quarry.v1.NamespaceService/ListNamespaces"], CallRecord())  # not namespaced: fine


def test_a_servicer_never_gets_a_caller_nobody_admitted() -> None:
    with pytest.raises(Internal) as missing:
        CallerResolver()(None)  # type: ignore[arg-type]
    assert missing.value.reason == "NO_CALLER"
