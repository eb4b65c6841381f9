"""Around every method handler: each call is admitted, its errors mapped, its outcome audited and measured.

For each call: the method's rule comes from the one access table (`server/domain/access.py`), admission
resolves the caller from the call's metadata (or refuses it), the handler runs with that caller, domain
errors become statuses, the audit trail gets the row the call needs, and the call is counted and timed.

A namespace-scoped method whose handler never checked the caller's role on a namespace fails closed
(INTERNAL): a forgotten check is a bug to surface, never a silent grant.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, cast

import grpc
from grpc import aio

from server import metrics
from server.api.caller import CURRENT_CALLER, credentials
from server.api.errors import code_for, status_for
from server.api.wire import message_size
from server.domain.access import Rule, rule_for
from server.domain.admission import Admission
from server.domain.caller import Caller, CallRecord
from server.model.errors import Internal, PermissionDenied, QuarryError
from server.model.identity import Access

log = logging.getLogger(__name__)

# After a refusal, what is read (and dropped) of a client still sending, at most: enough for the last chunks
# and the finish of a stream refused near its end, never the rest of a large part.
DRAIN_BYTES = 4 << 20
DRAIN_SECONDS = 1.0
_NAMESPACED = (Access.READER, Access.WRITER, Access.ADMIN)
_NO_RULE = Rule(Access.OPERATOR)


async def _abort(context: aio.ServicerContext, exc: BaseException) -> None:
    status = status_for(exc)
    await context.abort(status.code, status.message, trailing_metadata=status.trailing_metadata)


def _observe(method: str, started: float, context: aio.ServicerContext) -> None:
    code = context.code()
    name = code.name if isinstance(code, grpc.StatusCode) else "OK" if code in (None, 0) else str(code)
    # The labelled children, looked up once per method and code (prometheus' labels() costs as much as the rest).
    handled = _HANDLED.get((method, name))
    if handled is None:
        handled = _HANDLED[(method, name)] = metrics.GRPC_HANDLED.labels(method=method, code=name)
    latency = _LATENCY.get(method)
    if latency is None:
        latency = _LATENCY[method] = metrics.GRPC_LATENCY.labels(method=method)
    handled.inc()
    latency.observe(time.perf_counter() - started)


# Keyed by the server's own method names (registered handlers) and the status codes: bounded.
_HANDLED: dict[tuple[str, str], Any] = {}
_LATENCY: dict[str, Any] = {}


def _is_abort(exc: BaseException) -> bool:
    # context.abort() raises grpc's own AbortError; it must pass through untouched.
    return isinstance(exc, aio.AbortError)


async def drain(requests: AsyncIterator[Any]) -> None:
    """Read (and drop) what the client is still sending before failing the call, for a while.

    A client that is still writing when the status arrives may report its own failed write instead of
    our status (grpc.aio does: INTERNAL "Failed execute_batch"). Draining lets it finish writing and then
    read the real status; the bound keeps a misbehaving client from holding the call open.
    """
    budget = DRAIN_BYTES
    with contextlib.suppress(Exception):
        async with asyncio.timeout(DRAIN_SECONDS):
            async for request in requests:
                budget -= message_size(request)
                if budget < 0:
                    return


def _cancel_when_call_ends(context: aio.ServicerContext) -> Callable[[], None]:
    """Cancel the handler if its call ends under it; return a function to call when the handler is done.

    When gRPC itself ends a client-streaming call (e.g. a message over the size limit), the handler's
    pending read never returns; without this the handler would hang, holding what it opened.
    """
    task = asyncio.current_task()
    finished = False

    def on_done(_: object) -> None:
        if not finished and task is not None:
            task.cancel()

    def handler_done() -> None:
        nonlocal finished
        finished = True

    context.add_done_callback(on_done)
    return handler_done


def _resource_of(request: Any) -> str:
    """The resource a request names, for the audit row of a call refused before its use case ran."""
    for field in ("name", "parent", "version", "base_version"):
        value = getattr(request, field, None)
        if isinstance(value, str) and value:
            return value
    for field in ("dataset", "namespace"):
        value = getattr(getattr(request, field, None), "name", None)
        if isinstance(value, str) and value:
            return value
    return ""


def _outcome(exc: BaseException | None, context: aio.ServicerContext) -> tuple[str, str]:
    """(status code name, ErrorInfo reason) a call ended with."""
    if exc is None:
        return "OK", ""
    if isinstance(exc, QuarryError):
        return code_for(exc).name, exc.reason
    if isinstance(exc, asyncio.CancelledError):
        return "CANCELLED", ""
    if _is_abort(exc):
        code = context.code()
        return (code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"), ""
    return "INTERNAL", ""


def _guard(rule: Rule, call: CallRecord) -> None:
    """Fail closed when a namespace-scoped method ran without checking the caller's role anywhere."""
    if rule.access in _NAMESPACED and not call.checked:
        log.error("a handler did not check its caller's role", extra={"method": call.method})
        raise Internal(f"{call.method} did not check the caller's role", reason="AUTHORIZATION_NOT_CHECKED")


class _Call:
    """One call's admission, caller and ending, shared by the handler wrappers."""

    def __init__(self, admission: Admission, rule: Rule, method: str, context: aio.ServicerContext,
                 request: Any = None) -> None:
        self.admission = admission
        self.rule = rule
        self.context = context
        self.record = CallRecord(method=method, peer=context.peer() or "", resource=_resource_of(request),
                                 request_id=str(getattr(request, "request_id", "") or ""))
        self.admitted = False
        self._ended = False
        self._token: contextvars.Token[Caller | None] | None = None

    async def admit(self) -> None:
        if self.rule is _NO_RULE:
            raise PermissionDenied(f"{self.record.method} has no access rule", reason="NO_ACCESS_RULE")
        caller = await self.admission.admit(self.record, self.rule,
                                            credentials(self.context.invocation_metadata()))
        self._token = CURRENT_CALLER.set(caller)
        self.admitted = True

    async def end(self, exc: BaseException | None) -> None:
        """Once per call: release the caller, and write the audit row the call still needs."""
        if self._ended:
            return
        self._ended = True
        if self._token is not None:
            CURRENT_CALLER.reset(self._token)
            self._token = None
        if self.rule.access is Access.NONE:
            return
        code, reason = _outcome(exc, self.context)
        if code in ("UNAUTHENTICATED", "PERMISSION_DENIED") or reason == "RATE_LIMITED":
            metrics.AUTH_DENIED.labels(reason or code).inc()
        record = self.record
        if log.isEnabledFor(logging.DEBUG):
            # Who called what, never with what credentials: the token's id only (its secret is never held here).
            log.debug("call", extra={"method": record.method, "code": code, "reason": reason, "peer": record.peer,
                                     "principal": record.principal, "token_id": record.token_id,
                                     "namespace": record.namespace})
        try:
            if not self.admission.needs_conclusion(record, code):
                return  # most reads: no row, and no task to shield one
            # Shielded: a call cancelled mid-way still gets its row.
            await asyncio.shield(self.admission.conclude(self.record, code, reason))
        except (Exception, asyncio.CancelledError) as error:
            log.error("could not conclude a call", extra={"method": self.record.method, "error": repr(error)})


def _wrap_unary_response(admission: Admission, rule: Rule, method: str, behavior: Callable[..., Awaitable[Any]],
                         streaming_request: bool = False) -> Callable[..., Awaitable[Any]]:
    async def handler(request: Any, context: aio.ServicerContext) -> Any:
        started = time.perf_counter()
        handler_done = _cancel_when_call_ends(context) if streaming_request else None
        call = _Call(admission, rule, method, context, None if streaming_request else request)
        failure: BaseException | None = None
        try:
            await call.admit()
            result = await behavior(request, context)
            _guard(rule, call.record)
            return result
        except BaseException as exc:
            failure = exc
            if not isinstance(exc, Exception) or _is_abort(exc):
                raise
            if streaming_request and not call.admitted:
                await drain(request)  # the handler that would have drained it never ran
            await call.end(exc)  # the audit row is written before the client hears
            await _abort(context, exc)
        finally:
            await call.end(failure)
            if handler_done is not None:
                handler_done()
            _observe(method, started, context)

    return handler


def _wrap_stream_response(admission: Admission, rule: Rule, method: str,
                          behavior: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    async def handler(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
        started = time.perf_counter()
        call = _Call(admission, rule, method, context, request)
        failure: BaseException | None = None
        result: Any = None
        try:
            await call.admit()
            result = behavior(request, context)
            if inspect.isasyncgen(result):
                async for response in result:
                    _guard(rule, call.record)
                    yield response
            else:
                await cast(Awaitable[Any], result)  # a handler that writes with context.write() (e.g. Health.Watch)
            _guard(rule, call.record)
        except BaseException as exc:
            failure = exc
            if not isinstance(exc, Exception) or _is_abort(exc):
                raise
            await call.end(exc)  # the audit row is written before the client hears
            await _abort(context, exc)
        finally:
            if inspect.isasyncgen(result):
                # A call cancelled (or failed) half-way leaves the handler's generator suspended at a yield:
                # close it now, so what it holds (a read's buffer grant, a file) goes back at once.
                try:
                    await result.aclose()
                except Exception as error:
                    log.error("closing a stream handler failed", extra={"method": method, "error": repr(error)})
            await call.end(failure)
            _observe(method, started, context)

    return handler


def admitted(admission: Admission, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """`handler` of the full method name `method` (/package.Service/Method), wrapped: admission, domain errors as
    statuses, the audit row, metrics."""
    rule = rule_for(method) or _NO_RULE
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            _wrap_unary_response(admission, rule, method, handler.unary_unary),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            _wrap_unary_response(admission, rule, method, handler.stream_unary, streaming_request=True),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            _wrap_stream_response(admission, rule, method, handler.unary_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)
    return grpc.stream_stream_rpc_method_handler(
        _wrap_stream_response(admission, rule, method, handler.stream_stream),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer)


class _AdmittedGeneric(grpc.GenericRpcHandler):
    """A generic handler whose method handlers come out `admitted`, each wrapped once, on its first call."""

    def __init__(self, inner: grpc.GenericRpcHandler, admission: Admission) -> None:
        self._inner = inner
        self._admission = admission
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            handler = self._inner.service(details)
            if handler is None:
                return None  # not ours (UNIMPLEMENTED unless another handler has it); not kept: names are unbounded
            wrapped = self._wrapped[method] = admitted(self._admission, method, handler)
        return wrapped


class AdmittingServer:
    """Stands in for the gRPC server while servicers register: every method handler they add is `admitted`.

    The wrapping is done once per method at registration, not per call by a grpc.aio ServerInterceptor, which
    costs every call a coroutine chain and a fresh handler object (a fifth of a small read's server time).
    """

    def __init__(self, server: aio.Server, admission: Admission) -> None:
        self.server = server
        self._admission = admission

    def add_generic_rpc_handlers(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        self.server.add_generic_rpc_handlers(tuple(_AdmittedGeneric(h, self._admission) for h in handlers))

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        wrapped = {name: admitted(self._admission, f"/{service}/{name}", handler) for name, handler in handlers.items()}
        self.server.add_registered_method_handlers(service, wrapped)
