"""Channels, stubs and the call wrappers: the one boundary where grpc errors become SDK errors.

Every call gets a deadline and the namespace metadata; calls that are safe to repeat are retried by the
RetryPolicy. Long streams rely on HTTP/2 keepalive pings (every 30 s while a call is active; the
server accepts one every 10 s) to notice a dead connection instead of hanging.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from grpc import aio

from quarry._config import Config
from quarry._exceptions import from_grpc
from quarry._retry import RetryPolicy
from quarry.v1 import capabilities_service_pb2_grpc, dataset_service_pb2_grpc, upload_service_pb2_grpc

__all__ = ["AsyncTransport", "SyncTransport", "channel_options", "stream_timeout"]

NAMESPACE_METADATA = "x-quarry-namespace"
UPLOAD_METADATA = "x-quarry-upload"
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


def stream_timeout(nbytes: int, base: float) -> float:
    """A deadline for a stream moving `nbytes`: the unary deadline plus a second per MiB (1 MiB/s floor)."""
    return base + nbytes / MiB


class _Transport:
    def __init__(self, config: Config, timeout: float, retry: RetryPolicy) -> None:
        self.config = config
        self.timeout = timeout
        self.retry = retry
        self.metadata: tuple[tuple[str, str], ...] = ((NAMESPACE_METADATA, config.namespace),)

    def delay_after(self, exc: grpc.RpcError, attempt: int, waited: float, *, idempotent: bool = True) -> float:
        """Seconds to wait before trying again after failed attempt `attempt`; raises the SDK error instead
        when the call may not be repeated or the policy gives up."""
        error = from_grpc(exc)
        delay = self.retry.next_delay(attempt, error, waited) if idempotent else None
        if delay is None:
            raise error from exc
        return delay

    def _stubs(self, channel: Any) -> None:
        self.datasets = dataset_service_pb2_grpc.DatasetServiceStub(channel)
        self.uploads = upload_service_pb2_grpc.UploadServiceStub(channel)
        self.capabilities = capabilities_service_pb2_grpc.CapabilitiesServiceStub(channel)


class SyncTransport(_Transport):
    """A blocking channel with its stubs."""

    def __init__(self, config: Config, timeout: float, retry: RetryPolicy) -> None:
        super().__init__(config, timeout, retry)
        self.channel = grpc.insecure_channel(config.address, options=channel_options())
        self._stubs(self.channel)

    def unary(self, method: Callable[..., T], request: Any, *, idempotent: bool,
              timeout: float | None = None) -> T:
        """Call a unary method; retry it when that is safe and the error says it may help."""
        attempt, waited = 0, 0.0
        while True:
            attempt += 1
            try:
                return method(request, timeout=timeout or self.timeout, metadata=self.metadata)
            except grpc.RpcError as exc:
                delay = self.delay_after(exc, attempt, waited, idempotent=idempotent)
            time.sleep(delay)
            waited += delay

    def call(self, function: Callable[[], T]) -> T:
        """Run `function` (which makes grpc calls), translating grpc errors."""
        try:
            return function()
        except grpc.RpcError as exc:
            raise from_grpc(exc) from exc

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()


class AsyncTransport(_Transport):
    """A grpc.aio channel with its stubs."""

    def __init__(self, config: Config, timeout: float, retry: RetryPolicy) -> None:
        super().__init__(config, timeout, retry)
        self.channel = aio.insecure_channel(config.address, options=channel_options())
        self._stubs(self.channel)

    async def unary(self, method: Callable[..., Awaitable[T]], request: Any, *, idempotent: bool,
                    timeout: float | None = None) -> T:
        """Call a unary method; retry it when that is safe and the error says it may help."""
        attempt, waited = 0, 0.0
        while True:
            attempt += 1
            try:
                return await method(request, timeout=timeout or self.timeout, metadata=self.metadata)
            except grpc.RpcError as exc:
                delay = self.delay_after(exc, attempt, waited, idempotent=idempotent)
            await asyncio.sleep(delay)
            waited += delay

    async def close(self) -> None:
        """Close the channel."""
        await self.channel.close()

