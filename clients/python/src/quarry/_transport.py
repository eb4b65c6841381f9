"""Channels, stubs and the I/O of every kind of call: the one boundary where grpc errors become SDK errors.

Every call gets a deadline, the namespace metadata and, when there is one, the token (`authorization: Bearer
…`); the channel speaks TLS when the configuration says so. `call` sends a unary call, retried as its budget
decides; `stream` opens a server stream; `upload` is the client-streaming Upload. Nothing else in the SDK
touches a grpc call object or catches a grpc exception. Long streams rely on HTTP/2 keepalive pings
(every 30 s while a call is active; the server accepts one every 10 s) to notice a dead connection
instead of hanging.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable, Coroutine, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import grpc
from grpc import aio

from quarry._calls import Pages, Stream, Unary, stream_timeout
from quarry._config import Config
from quarry._exceptions import RpcError, from_grpc
from quarry._retry import Budget, RetryPolicy, async_attempts, attempts
from quarry._tls import Diagnosis, channel_credentials
from quarry._wire import serialize_request
from quarry.v1 import (
    audit_service_pb2_grpc,
    capabilities_service_pb2_grpc,
    dataset_service_pb2_grpc,
    namespace_service_pb2_grpc,
    token_service_pb2_grpc,
    upload_service_pb2_grpc,
)
from quarry.v1 import upload_service_pb2 as upb

__all__ = ["AsyncTransport", "SyncTransport", "channel_options", "stream_timeout", "translated"]

NAMESPACE_METADATA = "x-quarry-namespace"
AUTHORIZATION_METADATA = "authorization"
UPLOAD_METADATA = "x-quarry-upload"
UPLOAD_METHOD = "/quarry.v1.UploadService/Upload"
OWN_WRITE_FAILURE = "Internal error from Core"  # grpc.aio's status for a write that failed under it
MiB = 1 << 20

T = TypeVar("T")


def channel_options() -> list[tuple[str, Any]]:
    """Options of every channel: message sizes, and keepalive for long streams."""
    return [
        ("grpc.max_receive_message_length", 256 * MiB),  # previews and file chunks; the server bounds them
        ("grpc.max_send_message_length", 256 * MiB),  # chunks are sized from GetCapabilities
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.http2.max_pings_without_data", 0),  # a stream waiting on a slow store sends no data for a while
    ]


@contextmanager
def translated(diagnose: Callable[[RpcError], RpcError] | None = None) -> Iterator[None]:
    """The boundary: a grpc error raised in the block (sync or aio) leaves it as the SDK's RpcError (refined
    by `diagnose`, which tells a TLS mismatch from a server that is down)."""
    try:
        yield
    except grpc.RpcError as exc:
        error = from_grpc(exc)
        raise (diagnose(error) if diagnose is not None else error) from exc


def metadata_of(config: Config) -> tuple[tuple[str, str], ...]:
    """The metadata of every call: the namespace, and the token when there is one."""
    metadata = [(NAMESPACE_METADATA, config.namespace)]
    if config.token:
        metadata.append((AUTHORIZATION_METADATA, f"Bearer {config.token}"))
    return tuple(metadata)


def open_channel(config: Config, module: Any) -> Any:
    """A channel of `module` (grpc or grpc.aio) to the configured server, over TLS when configured."""
    credentials = channel_credentials(config)
    if credentials is None:
        return module.insecure_channel(config.address, options=channel_options())
    return module.secure_channel(config.address, credentials, options=channel_options())


def _settled(coroutine: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that completes without waiting (a finished call's status getters do)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("the call has not settled")


def _status_now(call: aio.Call) -> aio.AioRpcError | None:
    """A finished call's status as an error (None when OK), read at once, from a done-callback."""
    code = _settled(call.code())
    if code is grpc.StatusCode.OK:
        return None
    return aio.AioRpcError(code, _settled(call.initial_metadata()), _settled(call.trailing_metadata()),
                           _settled(call.details()))


class _Transport:
    def __init__(self, config: Config, timeout: float, retry: RetryPolicy, channel: Any) -> None:
        self.config = config
        self.timeout = timeout
        self.retry = retry
        self.metadata = metadata_of(config)
        self.channel = channel
        self.diagnose = Diagnosis(config)
        self._services = {
            "datasets": dataset_service_pb2_grpc.DatasetServiceStub(channel),
            "uploads": upload_service_pb2_grpc.UploadServiceStub(channel),
            "capabilities": capabilities_service_pb2_grpc.CapabilitiesServiceStub(channel),
            "tokens": token_service_pb2_grpc.TokenServiceStub(channel),
            "namespaces": namespace_service_pb2_grpc.NamespaceServiceStub(channel),
            "audit": audit_service_pb2_grpc.AuditServiceStub(channel),
        }
        # Upload as the stub has it, but taking chunk messages encoded already (bytes: `_wire.py`).
        self._upload = channel.stream_unary(UPLOAD_METHOD, request_serializer=serialize_request,
                                            response_deserializer=upb.UploadResponse.FromString)

    def translated(self) -> Any:
        """`translated`, with this client's diagnosis of connection failures."""
        return translated(self.diagnose)

    def budget(self, idempotent: bool = True) -> Budget:
        """The retry budget of one call under the client's policy (a call that may not be repeated: none)."""
        return Budget(self.retry) if idempotent else Budget.once()

    @contextmanager
    def stream(self, call: Stream) -> Iterator[Any]:
        """The messages of a server stream (an iterator, or an async one), read in the block; the call is
        cancelled when the block ends."""
        messages = self._method(call)(call.request, timeout=self._timeout(call), metadata=self.metadata)
        try:
            with self.translated():
                yield messages
        finally:
            messages.cancel()

    def _method(self, call: Unary[Any] | Stream) -> Any:
        return getattr(self._services[call.service], call.method)

    def _timeout(self, call: Unary[Any] | Stream) -> float:
        return call.timeout or self.timeout


class SyncTransport(_Transport):
    """A blocking channel with its stubs."""

    def __init__(self, config: Config, timeout: float, retry: RetryPolicy) -> None:
        super().__init__(config, timeout, retry, open_channel(config, grpc))

    def call(self, call: Unary[T]) -> T:
        """Send a unary call, retried while its budget allows; its answer as the call reads it."""
        for attempt in attempts(self.budget(call.idempotent)):
            with attempt, self.translated():
                response = self._method(call)(call.request, timeout=self._timeout(call), metadata=self.metadata)
        return call.read(response)

    def pages(self, pages: Pages[T]) -> Iterator[T]:
        """Every item of a List call, fetching pages as they are needed."""
        call: Unary[Any] | None = pages.first
        while call is not None:
            response = self.call(call)
            yield from pages.items(response)
            call = pages.after(response)

    def whole(self, pages: Pages[T]) -> Any:
        """Every page of a paged call as one response (`Pages.joined`)."""
        items: list[T] = []
        call: Unary[Any] = pages.first
        while True:
            response = self.call(call)
            items.extend(pages.items(response))
            following = pages.after(response)
            if following is None:
                return pages.joined(response, items)
            call = following

    def messages(self, call: Stream) -> Iterator[Any]:
        """The messages of a server stream, as a generator (the call is cancelled when it is closed)."""
        with self.stream(call) as messages:
            yield from messages

    def upload(self, requests: Iterable[upb.UploadRequest | bytes], timeout: float) -> upb.UploadResponse:
        """One Upload stream (messages, or chunks encoded already). grpc's own thread consumes `requests`, so a
        server that fails the call while they are still being sent is reported with its real status."""
        with self.translated():
            response: upb.UploadResponse = self._upload(iter(requests), timeout=timeout, metadata=self.metadata)
            return response

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()


class AsyncTransport(_Transport):
    """A grpc.aio channel with its stubs."""

    def __init__(self, config: Config, timeout: float, retry: RetryPolicy) -> None:
        super().__init__(config, timeout, retry, open_channel(config, aio))

    async def call(self, call: Unary[T]) -> T:
        """Send a unary call, retried while its budget allows; its answer as the call reads it."""
        async for attempt in async_attempts(self.budget(call.idempotent)):
            with attempt, self.translated():
                response = await self._method(call)(call.request, timeout=self._timeout(call),
                                                    metadata=self.metadata)
        return call.read(response)

    async def pages(self, pages: Pages[T]) -> AsyncIterator[T]:
        """Every item of a List call, fetching pages as they are needed."""
        call: Unary[Any] | None = pages.first
        while call is not None:
            response = await self.call(call)
            for item in pages.items(response):
                yield item
            call = pages.after(response)

    async def whole(self, pages: Pages[T]) -> Any:
        """Every page of a paged call as one response (`Pages.joined`)."""
        items: list[T] = []
        call: Unary[Any] = pages.first
        while True:
            response = await self.call(call)
            items.extend(pages.items(response))
            following = pages.after(response)
            if following is None:
                return pages.joined(response, items)
            call = following

    async def messages(self, call: Stream) -> AsyncIterator[Any]:
        """The messages of a server stream, as an async generator (the call is cancelled when it is closed)."""
        with self.stream(call) as messages:
            async for message in messages:
                yield message

    async def upload(self, requests: AsyncIterable[upb.UploadRequest | bytes] | Iterable[upb.UploadRequest | bytes],
                     timeout: float) -> upb.UploadResponse:
        """One Upload stream of the given messages (or chunks encoded already)."""
        with self.translated():
            response: upb.UploadResponse = await self._upload(requests, timeout=timeout, metadata=self.metadata)
            return response

    async def upload_from(self, header: upb.UploadRequest, rest: AsyncIterator[upb.UploadRequest | bytes],
                          timeout: float) -> upb.UploadResponse:
        """One Upload stream: the header, then (once the server accepted it) the rest.

        grpc.aio reports its own failed write (INTERNAL "Internal error from Core") instead of the server's
        status when the server fails a call the client is still writing to: the status arrives, then the
        failed write overwrites it. So the header goes first, and no byte follows before the server's initial
        metadata (`x-quarry-upload`, sent once the header is accepted): a refused header is read as the real
        status. A refusal midway (the server drains only a few MiB) is read from the status the call first
        settled with, which a done-callback sees before the failed write can replace it."""
        call = self._upload(metadata=self.metadata, timeout=timeout)
        first: list[aio.AioRpcError | None] = []
        call.add_done_callback(lambda done: first.append(_status_now(done)))
        with self.translated():
            try:
                await call.write(header)
                if UPLOAD_METADATA not in dict(await call.initial_metadata() or ()):
                    return await call  # the header was refused: this raises the server's status
                async for message in rest:
                    await call.write(message)
                await call.done_writing()
            except (asyncio.InvalidStateError, aio.AioRpcError):
                pass  # the call ended while we wrote: its status, read below, says why
            except BaseException:
                call.cancel()
                raise
            try:
                return await call
            except aio.AioRpcError as error:
                server = first[0] if first else None
                if error.code() is grpc.StatusCode.INTERNAL and error.details() == OWN_WRITE_FAILURE and server:
                    raise server from None
                raise

    async def close(self) -> None:
        """Close the channel."""
        await self.channel.close()
