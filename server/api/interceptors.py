"""Server interceptor: every handler's errors are mapped in one place, and every call is measured."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import grpc
from grpc import aio

from server import metrics
from server.api.errors import status_for


async def _abort(context: aio.ServicerContext, exc: BaseException) -> None:
    status = status_for(exc)
    await context.abort(status.code, status.message, trailing_metadata=status.trailing_metadata)


def _observe(method: str, started: float, context: aio.ServicerContext) -> None:
    code = context.code()
    name = code.name if isinstance(code, grpc.StatusCode) else "OK" if code in (None, 0) else str(code)
    metrics.GRPC_HANDLED.labels(method=method, code=name).inc()
    metrics.GRPC_LATENCY.labels(method=method).observe(time.perf_counter() - started)


def _is_abort(exc: BaseException) -> bool:
    # context.abort() raises grpc's own AbortError; it must pass through untouched.
    return isinstance(exc, aio.AbortError)


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


def _wrap_unary_response(method: str, behavior: Callable[..., Awaitable[Any]],
                         streaming_request: bool = False) -> Callable[..., Awaitable[Any]]:
    async def handler(request: Any, context: aio.ServicerContext) -> Any:
        started = time.perf_counter()
        handler_done = _cancel_when_call_ends(context) if streaming_request else None
        try:
            return await behavior(request, context)
        except Exception as exc:
            if _is_abort(exc):
                raise
            await _abort(context, exc)
        finally:
            if handler_done is not None:
                handler_done()
            _observe(method, started, context)

    return handler


def _wrap_stream_response(method: str,
                          behavior: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    async def handler(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
        started = time.perf_counter()
        try:
            result = behavior(request, context)
            if inspect.isasyncgen(result):
                async for response in result:
                    yield response
            else:
                await cast(Awaitable[Any], result)  # a handler that writes with context.write() (e.g. Health.Watch)
        except Exception as exc:
            if _is_abort(exc):
                raise
            await _abort(context, exc)
        finally:
            _observe(method, started, context)

    return handler


class ErrorAndMetricsInterceptor(aio.ServerInterceptor):
    """Wrap every method handler: domain errors become statuses, and each call is counted and timed."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary_response(method, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary_response(method, handler.stream_unary, streaming_request=True),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream_response(method, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        return grpc.stream_stream_rpc_method_handler(
            _wrap_stream_response(method, handler.stream_stream),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)
