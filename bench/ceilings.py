"""The bare grpc.aio servers the benchmarks measure Quarry against: what the transport gives with no work done.

    python -m bench.ceilings ADDRESS DIRECTORY

One process, one grpc.aio server (no interceptor, no database, no store), four methods:

- `/bench.Bare/Sink`: client-streaming, reads every message as raw bytes and drops it (the upload ceiling);
- `/bench.Bare/Write`: client-streaming, takes each chunk's data as a view of the received message (no
  protobuf parse: that made two copies of every chunk and left this reference slower than Quarry itself),
  and appends it to a `DirectFile` (bench/direct_file.py: O_DIRECT writes of 8 MiB from a thread while the
  next buffer fills, one fdatasync): the cheapest plain server that makes the bytes durable the way Quarry
  does (O_DIRECT part writes). It was written through the page cache, fdatasync'd per
  64 MiB, and ran at 980 MB/s where this disk takes 2 GB/s: a slow reference;
- `/bench.Bare/Read`: server-streaming, sends one prebuilt serialized ReadFileResponse of 1 MiB again and again
  until the request's `limit` bytes are sent (the read ceiling: from memory, nothing read or parsed);
- `/bench.Bare/Get`: unary, answers every call with one prebuilt serialized GetDatasetResponse (the unary
  ceiling), whatever the request.

Prints "ready" once it listens.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
from grpc import aio
from quarry.v1 import dataset_pb2
from quarry.v1 import dataset_service_pb2 as dpb

from bench.direct_file import DirectFile

MiB = 1 << 20
MESSAGE = MiB
SERVICE = "bench.Bare"
SINK, WRITE, READ, GET = (f"/{SERVICE}/{name}" for name in ("Sink", "Write", "Read", "Get"))
CHUNK_TAG, DATA_TAG = 0x12, 0x0A  # UploadRequest.chunk (field 2) and UploadChunk.data (field 1), length-delimited


def _varint(raw: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = raw[position]
        value |= (byte & 0x7F) << shift
        position += 1
        if byte < 0x80:
            return value, position
        shift += 7


def chunk_data(raw: bytes) -> memoryview | None:
    """The data of an UploadRequest carrying a chunk, as a view of `raw`; None for any other message."""
    if not raw or raw[0] != CHUNK_TAG:
        return None
    _, position = _varint(raw, 1)
    if raw[position] != DATA_TAG:
        return None
    size, start = _varint(raw, position + 1)
    return memoryview(raw)[start:start + size]


def read_message(offset: int = 0) -> bytes:
    """The serialized ReadFileResponse the read ceiling sends: 1 MiB of data and the fields Quarry fills."""
    return dpb.ReadFileResponse(data=os.urandom(MESSAGE), offset=offset, file_size_bytes=1 << 30,
                                sha256="0" * 64).SerializeToString()


def dataset_answer() -> bytes:
    """The serialized GetDatasetResponse the unary ceiling answers: about the size of Quarry's."""
    dataset = dataset_pb2.Dataset(name="namespaces/default/datasets/bench", uid=str(uuid.uuid4()),
                                  description="", etag="0123456789abcdef", state=dataset_pb2.DATASET_STATE_ACTIVE)
    dataset.create_time.GetCurrentTime()
    dataset.update_time.GetCurrentTime()
    return dpb.GetDatasetResponse(dataset=dataset).SerializeToString()


class Bare:
    """The four handlers."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.message = read_message()
        self.answer = dataset_answer()

    async def sink(self, requests: AsyncIterator[bytes], context: aio.ServicerContext) -> bytes:
        received = 0
        async for message in requests:
            received += len(message)
        return str(received).encode()

    async def write(self, requests: AsyncIterator[bytes], context: aio.ServicerContext) -> bytes:
        path = self.directory / uuid.uuid4().hex
        out = DirectFile(path)
        try:
            async for raw in requests:
                data = chunk_data(raw)
                if data is not None:
                    await out.append(data)
            written = await out.finish()
        finally:
            out.close()
            path.unlink()
        return str(written).encode()

    async def read(self, request: bytes, context: aio.ServicerContext) -> AsyncIterator[bytes]:
        left = dpb.ReadFileRequest.FromString(request).limit
        while left > 0:
            yield self.message
            left -= MESSAGE

    async def get(self, request: bytes, context: aio.ServicerContext) -> bytes:
        return self.answer


async def main(address: str, directory: Path) -> None:
    bare = Bare(directory)
    server = aio.server(options=[("grpc.max_receive_message_length", 64 * MiB),
                                 ("grpc.max_send_message_length", 64 * MiB), ("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {
        "Sink": grpc.stream_unary_rpc_method_handler(bare.sink),
        "Write": grpc.stream_unary_rpc_method_handler(bare.write),
        "Read": grpc.unary_stream_rpc_method_handler(bare.read),
        "Get": grpc.unary_unary_rpc_method_handler(bare.get),
    }),))
    server.add_insecure_port(address)
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2])))
