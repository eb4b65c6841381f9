"""The measured clients of `make bench`, one run per process: `python -m bench.clients KIND JSON-ARGUMENTS`.

Each run prints one JSON line: the seconds its work took (process start-up and connecting excluded) and what it
moved. A fresh process per run keeps one run's heap, threads and gRPC state out of the next.

- `upload`: the cheapest upload client: one prebuilt 1 MiB UploadRequest sent again and again from an async
  generator (grpc.aio), after a header and before a finish, over `streams` calls of whole parts. Sent to the
  bare sink it measures the transport's ceiling; to Quarry's Upload, the server.
- `sdk-upload`: `quarry.Client.upload_file` (blocking client, what the CLI runs): hashing, reading the file, CRCs.
- `read`: the cheapest read client: one ReadFile call (grpc.aio), each message parsed, its bytes dropped.
- `durable-read`: `read` plus what a verified, durable download cannot skip (sha256 of every byte, an O_DIRECT
  write of it, an fsync): the least such a download costs.
- `sdk-download`: `quarry.Client.download` to a file: written, sha256-verified, fsynced.
- `unary`: `callers` concurrent callers on one grpc.aio channel, each sending one prebuilt request in a loop for
  `seconds`: calls per second and latency quantiles.
- `s3-direct`: aioboto3 multipart straight to S3, `in_flight` parts at once, each read from the file in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from grpc import aio
from quarry.v1 import dataset_service_pb2 as dpb
from quarry.v1 import upload_pb2
from quarry.v1 import upload_service_pb2 as upb

MiB = 1 << 20
OPTIONS = [("grpc.max_send_message_length", 64 * MiB), ("grpc.max_receive_message_length", 64 * MiB)]
UPLOAD = "/quarry.v1.UploadService/Upload"
CREATE = "/quarry.v1.UploadService/CreateUpload"
COMPLETE = "/quarry.v1.UploadService/CompleteUpload"
READ = "/quarry.v1.DatasetService/ReadFile"
GET = "/quarry.v1.DatasetService/GetDataset"


class Clock:
    """Wall time and this process's CPU time (all its threads) from now."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self) -> dict[str, float]:
        return {"seconds": time.perf_counter() - self.wall, "client_cpu": time.process_time() - self.cpu}


def _same(raw: bytes) -> bytes:
    return raw


def _metadata(args: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    metadata = [("x-quarry-namespace", args["namespace"])]
    if args.get("token"):
        metadata.append(("authorization", f"Bearer {args['token']}"))
    return tuple(metadata)


async def upload(args: dict[str, Any]) -> dict[str, Any]:
    """Upload `size` bytes (one prebuilt 1 MiB chunk repeated) over `streams` calls; bare or through Quarry."""
    size, streams, part, bare = args["size"], args["streams"], args["part_size"], args["bare"]
    metadata = _metadata(args)
    chunk = upb.UploadRequest(chunk=upb.UploadChunk(data=os.urandom(MiB)))
    async with aio.insecure_channel(args["address"], options=OPTIONS) as channel:
        call = channel.stream_unary(args["method"], request_serializer=upb.UploadRequest.SerializeToString,
                                    response_deserializer=_same)
        await channel.channel_ready()
        clock = Clock()
        name = "bare"
        if not bare:
            create = channel.unary_unary(CREATE, request_serializer=upb.CreateUploadRequest.SerializeToString,
                                         response_deserializer=upb.CreateUploadResponse.FromString)
            fields = upload_pb2.Upload(dataset=args["dataset"], path=args["path"], declared_size_bytes=size)
            created = await create(upb.CreateUploadRequest(upload=fields), metadata=metadata)
            name, part = created.upload.name, created.upload.part_size_bytes
        parts = -(-size // part)
        per_stream = -(-parts // streams)

        async def one(start: int, end: int) -> None:
            async def requests() -> AsyncIterator[upb.UploadRequest]:
                yield upb.UploadRequest(header=upb.UploadHeader(upload=name, write_offset=start))
                for _ in range((end - start) // MiB):
                    yield chunk
                if (end - start) % MiB:
                    yield upb.UploadRequest(chunk=upb.UploadChunk(data=os.urandom((end - start) % MiB)))
                if end == size:
                    yield upb.UploadRequest(finish=upb.UploadFinish(keep_open=streams > 1))

            await call(requests(), metadata=metadata, timeout=600)

        spans = [(first * part, min(size, (first + per_stream) * part)) for first in range(0, parts, per_stream)]
        await asyncio.gather(*(one(start, end) for start, end in spans))
        if not bare and streams > 1:
            complete = channel.unary_unary(COMPLETE, request_serializer=upb.CompleteUploadRequest.SerializeToString,
                                           response_deserializer=upb.CompleteUploadResponse.FromString)
            done = await complete(upb.CompleteUploadRequest(name=name), metadata=metadata)
            assert done.upload.state == upload_pb2.UPLOAD_STATE_STAGED, done
        return {**clock.stop(), "bytes": size, "upload": name}


def sdk_client(args: dict[str, Any]) -> Any:
    import quarry

    return quarry.Client(args["address"], namespace=args["namespace"], token=args["token"],
                         cache_dir=args["cache_dir"], timeout=120)


def sdk_upload(args: dict[str, Any]) -> dict[str, Any]:
    """`upload_file` of a file on disk (its pages cached, as the runs before left them)."""
    with sdk_client(args) as client:
        client.get_capabilities()  # connected, and the chunk size known
        clock = Clock()
        result = client.upload_file(args["file"], args["dataset"], args["path"], streams=args["streams"])
        measured = clock.stop()
    assert result.upload.state == upload_pb2.UPLOAD_STATE_STAGED, result.upload
    return {**measured, "bytes": result.size, "upload": result.upload.name}


@contextlib.asynccontextmanager
async def _read_stream(args: dict[str, Any]) -> AsyncIterator[AsyncIterator[dpb.ReadFileResponse]]:
    """The messages of one ReadFile stream of `size` bytes, on a channel that is already connected."""
    async with aio.insecure_channel(args["address"], options=OPTIONS) as channel:
        call = channel.unary_stream(args["method"], request_serializer=dpb.ReadFileRequest.SerializeToString,
                                    response_deserializer=dpb.ReadFileResponse.FromString)
        await channel.channel_ready()
        request = dpb.ReadFileRequest(version=args["version"], path=args["path"], limit=args["size"])
        yield call(request, metadata=_metadata(args), timeout=600)


async def read(args: dict[str, Any]) -> dict[str, Any]:
    """One ReadFile stream of `size` bytes; every message parsed, its bytes counted."""
    async with _read_stream(args) as messages:
        clock = Clock()
        received = 0
        async for message in messages:
            received += len(message.data)
        measured = clock.stop()
    assert received == args["size"], (received, args["size"])
    return {**measured, "bytes": received}


async def durable_read(args: dict[str, Any]) -> dict[str, Any]:
    """`read`, and what a verified, durable download cannot skip: every byte hashed (sha256) and appended to a
    `DirectFile` (O_DIRECT writes from a thread while the next buffer fills, one fdatasync). The least such a
    download costs, with the cheapest client."""
    import hashlib

    from bench.direct_file import DirectFile

    out = DirectFile(Path(args["out"]))
    digest = hashlib.sha256()
    try:
        async with _read_stream(args) as messages:
            clock = Clock()
            async for message in messages:
                data = message.data
                digest.update(data)
                await out.append(data)
            written = await out.finish()
            measured = clock.stop()
    finally:
        out.close()
        os.unlink(args["out"])
    assert written == args["size"], (written, args["size"])
    return {**measured, "bytes": written, "sha256": digest.hexdigest()}


def sdk_download(args: dict[str, Any]) -> dict[str, Any]:
    """`download` of one file into `out` (removed afterwards)."""
    out = Path(args["out"])
    with sdk_client(args) as client:
        client.get_capabilities()
        clock = Clock()
        result = client.download(args["dataset"], args["path"], out, version=args["version"])
        measured = clock.stop()
    out.unlink()
    return {**measured, "bytes": result.size}


async def unary(args: dict[str, Any]) -> dict[str, Any]:
    """`callers` loops of one prebuilt GetDatasetRequest on one channel for `seconds`."""
    request = dpb.GetDatasetRequest(name=args["name"])
    metadata = _metadata(args)
    latencies: list[float] = []
    async with aio.insecure_channel(args["address"], options=OPTIONS) as channel:
        call = channel.unary_unary(args["method"], request_serializer=dpb.GetDatasetRequest.SerializeToString,
                                   response_deserializer=dpb.GetDatasetResponse.FromString)
        for _ in range(args["callers"]):  # connected, every cache on the way warm
            await call(request, metadata=metadata, timeout=30)
        stop = time.perf_counter() + args["seconds"]

        async def loop() -> None:
            while (now := time.perf_counter()) < stop:
                await call(request, metadata=metadata, timeout=30)
                latencies.append(time.perf_counter() - now)

        clock = Clock()
        await asyncio.gather(*(loop() for _ in range(args["callers"])))
        measured = clock.stop()
    ordered = sorted(latencies)
    seconds = measured["seconds"]
    return {**measured, "calls": len(ordered), "rps": len(ordered) / seconds,
            "p50": statistics.median(ordered), "p99": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]}


async def s3_direct(args: dict[str, Any]) -> dict[str, Any]:
    """A multipart upload of the file straight to S3, `in_flight` parts of `s3_part` bytes at once."""
    import aioboto3

    size, part, path = args["size"], args["s3_part"], args["file"]
    session = aioboto3.Session(aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1")
    async with session.client("s3", endpoint_url=args["endpoint"]) as s3:
        await s3.list_objects_v2(Bucket=args["bucket"], MaxKeys=1)  # connected
        key = f"direct/{time.monotonic_ns()}"
        clock = Clock()
        upload_id = (await s3.create_multipart_upload(Bucket=args["bucket"], Key=key))["UploadId"]
        semaphore = asyncio.Semaphore(args["in_flight"])
        etags: dict[int, str] = {}

        def body(offset: int) -> bytes:
            with open(path, "rb") as source:
                source.seek(offset)
                return source.read(min(part, size - offset))

        async def send(number: int, offset: int) -> None:
            async with semaphore:
                data = await asyncio.to_thread(body, offset)
                answer = await s3.upload_part(Bucket=args["bucket"], Key=key, UploadId=upload_id,
                                              PartNumber=number, Body=data)
                etags[number] = answer["ETag"]

        await asyncio.gather(*(send(n, offset) for n, offset in enumerate(range(0, size, part), start=1)))
        await s3.complete_multipart_upload(
            Bucket=args["bucket"], Key=key, UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]})
        measured = clock.stop()
        await s3.delete_object(Bucket=args["bucket"], Key=key)
    return {**measured, "bytes": size}


KINDS = {"upload": upload, "sdk-upload": sdk_upload, "read": read, "durable-read": durable_read,
         "sdk-download": sdk_download, "unary": unary, "s3-direct": s3_direct}


def main() -> None:
    run = KINDS[sys.argv[1]]
    args = json.loads(sys.argv[2])
    outcome = asyncio.run(run(args)) if asyncio.iscoroutinefunction(run) else run(args)
    print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    main()
