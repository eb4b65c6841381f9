"""A bare grpc.aio client-streaming server that reads every message and discards it: the transport's ceiling.

Run: python bench/bare_sink.py ADDRESS MAX_MESSAGE_BYTES
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import grpc
from grpc import aio

METHOD = "/bench.Sink/Upload"


async def _upload(requests: AsyncIterator[bytes], context: aio.ServicerContext) -> bytes:
    received = 0
    async for message in requests:
        received += len(message)
    return str(received).encode()


async def main(address: str, max_message: int) -> None:
    server = aio.server(options=[("grpc.max_receive_message_length", max_message), ("grpc.so_reuseport", 0)])
    handler = grpc.method_handlers_generic_handler(
        "bench.Sink", {"Upload": grpc.stream_unary_rpc_method_handler(_upload)})
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(address)
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
