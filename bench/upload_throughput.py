"""Upload throughput: through the Quarry server, straight to the store, and over bare gRPC, in one run.

    python bench/upload_throughput.py --store file --size 1GiB
    python bench/upload_throughput.py --store s3 --size 1GiB --streams 4

Prints MB/s of (a) the Quarry server, (b) the same bytes straight to the same store (aioboto3 multipart
with the same S3 part size for S3, a plain file copy with fsync for the local store), and (c) a bare
grpc.aio server that discards the bytes (the transport's ceiling), the ratios a/b and a/c, and the
Quarry server's peak RSS. Each figure is the median of --repeat runs, taken in turns.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import aioboto3
from grpc import aio
from quarry.v1 import upload_pb2, upload_service_pb2_grpc
from quarry.v1 import upload_service_pb2 as pb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.stack import BUCKET, Stack, quarry_stack  # noqa: E402
from server.listen_ports import free_port  # noqa: E402
from server.storage.objects.s3parts import sub_parts  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30
OUT = Path(__file__).resolve().parent / "out"


def parse_size(text: str) -> int:
    units = {"KIB": 1 << 10, "MIB": MiB, "GIB": GiB, "KB": 1000, "MB": 10**6, "GB": 10**9, "B": 1}
    upper = text.upper()
    for unit, factor in units.items():
        if upper.endswith(unit):
            return int(float(upper[: -len(unit)]) * factor)
    return int(text)


def source_file(size: int) -> Path:
    """A file of random bytes of `size` (kept under bench/out/ between runs)."""
    OUT.mkdir(exist_ok=True)
    path = OUT / f"source-{size}.bin"
    if not path.exists() or path.stat().st_size != size:
        with open(path, "wb") as out:
            remaining = size
            while remaining:
                block = os.urandom(min(remaining, 64 * MiB))
                out.write(block)
                remaining -= len(block)
    return path


def part_size_for(size: int) -> int:
    """The part size the server picks (mirrors server.domain.parts for the default limits)."""
    from server.domain.parts import UploadLimits, choose_part_size

    limits = UploadLimits(8 * MiB, 5 * MiB, 128 * MiB, 1 << 40, 1000, 86400)
    return choose_part_size(size, limits)


async def _chunks(path: Path, start: int, end: int, chunk: int) -> AsyncIterator[bytes]:
    # Plain reads from the page cache, the same in every mode measured.
    with open(path, "rb") as source:  # noqa: ASYNC230
        source.seek(start)
        position = start
        while position < end:
            data = source.read(min(chunk, end - position))
            position += len(data)
            yield data


async def quarry_upload(stack: Stack, path: Path, size: int, chunk: int, streams: int) -> None:
    """Upload through the server: one call, or `streams` parallel streams over part-aligned ranges."""
    options = [("grpc.max_send_message_length", 64 * MiB)]
    async with aio.insecure_channel(stack.address, options=options) as channel:
        stub = upload_service_pb2_grpc.UploadServiceStub(channel)
        fields = upload_pb2.Upload(dataset="bench", path=path.name, declared_size_bytes=size)
        created = (await stub.CreateUpload(pb.CreateUploadRequest(upload=fields))).upload
        part = created.part_size_bytes
        parts = -(-size // part)
        per_stream = -(-parts // streams)

        async def one(first_part: int, last_part: int) -> None:
            start, end = first_part * part, min(size, last_part * part)

            async def requests() -> AsyncIterator[pb.UploadRequest]:
                yield pb.UploadRequest(header=pb.UploadHeader(upload=created.name, write_offset=start))
                async for data in _chunks(path, start, end, chunk):
                    yield pb.UploadRequest(chunk=pb.UploadChunk(data=data))
                if end == size:
                    yield pb.UploadRequest(finish=pb.UploadFinish(keep_open=True))

            await stub.Upload(requests())

        ranges = [(i, min(parts, i + per_stream)) for i in range(0, parts, per_stream)]
        await asyncio.gather(*(one(a, b) for a, b in ranges))
        done = (await stub.CompleteUpload(pb.CompleteUploadRequest(name=created.name))).upload
        assert done.state == upload_pb2.UPLOAD_STATE_STAGED and done.size_bytes == size, done


async def bare_upload(address: str, path: Path, size: int, chunk: int, streams: int) -> None:
    """The same messages to the bare sink."""
    options = [("grpc.max_send_message_length", 64 * MiB)]
    async with aio.insecure_channel(address, options=options) as channel:
        call = channel.stream_unary("/bench.Sink/Upload", request_serializer=pb.UploadRequest.SerializeToString,
                                    response_deserializer=lambda raw: raw)
        part = part_size_for(size)
        parts = -(-size // part)
        per_stream = -(-parts // streams)

        async def one(first_part: int, last_part: int) -> None:
            start, end = first_part * part, min(size, last_part * part)

            async def requests() -> AsyncIterator[pb.UploadRequest]:
                yield pb.UploadRequest(header=pb.UploadHeader(upload="bench", write_offset=start))
                async for data in _chunks(path, start, end, chunk):
                    yield pb.UploadRequest(chunk=pb.UploadChunk(data=data))

            received = int(await call(requests()))
            assert received > end - start

        ranges = [(i, min(parts, i + per_stream)) for i in range(0, parts, per_stream)]
        await asyncio.gather(*(one(a, b) for a, b in ranges))


async def direct_s3(stack: Stack, path: Path, size: int, in_flight: int) -> None:
    """aioboto3 multipart straight to the same S3 server, with the S3 part size the server uses."""
    _, s3_part = sub_parts(part_size_for(size), -(-size // part_size_for(size)))
    session = aioboto3.Session(aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1")
    async with session.client("s3", endpoint_url=stack.s3_endpoint) as s3:
        key = f"direct/{time.monotonic_ns()}"
        upload_id = (await s3.create_multipart_upload(Bucket=BUCKET, Key=key))["UploadId"]
        semaphore = asyncio.Semaphore(in_flight)
        etags: dict[int, str] = {}

        async def send(number: int, offset: int) -> None:
            async with semaphore:
                with open(path, "rb") as source:  # noqa: ASYNC230 - as in _chunks
                    source.seek(offset)
                    body = source.read(s3_part)
                result = await s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=number,
                                              Body=body)
                etags[number] = result["ETag"]

        await asyncio.gather(*(send(n, off) for n, off in enumerate(range(0, size, s3_part), start=1)))
        await s3.complete_multipart_upload(
            Bucket=BUCKET, Key=key, UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]})
        await s3.delete_object(Bucket=BUCKET, Key=key)


async def direct_file(stack: Stack, path: Path) -> None:
    """A plain copy into the store's directory, fsynced."""
    target = Path(stack.storage_url.removeprefix("file://")) / "direct.bin"
    target.parent.mkdir(parents=True, exist_ok=True)
    await asyncio.to_thread(shutil.copyfile, path, target)
    fd = os.open(target, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    target.unlink()


async def rate(run: Callable[[], Coroutine[Any, Any, None]], size: int) -> float:
    """MB/s of one run."""
    started = time.perf_counter()
    await run()
    return size / (time.perf_counter() - started) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=["file", "s3"], default="file")
    parser.add_argument("--size", type=parse_size, default=GiB)
    parser.add_argument("--chunk", type=parse_size, default=MiB, help="bytes per UploadChunk (default 1 MiB)")
    parser.add_argument("--streams", type=int, default=0, help="parallel streams (default: 1 file, 4 s3)")
    parser.add_argument("--in-flight", type=int, default=4, help="direct S3 parts in flight")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only-quarry", action="store_true", help="measure only (a) and the server's RSS")
    args = parser.parse_args()
    streams = args.streams or (4 if args.store == "s3" else 1)
    path = source_file(args.size)
    print(f"store={args.store} size={args.size / MiB:.0f} MiB chunk={args.chunk / MiB:g} MiB streams={streams} "
          f"part={part_size_for(args.size) / MiB:.0f} MiB repeat={args.repeat}", flush=True)
    with quarry_stack(args.store) as stack, contextlib.ExitStack() as cleanup:
        measures: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {}
        if not args.only_quarry:
            sink_address = f"127.0.0.1:{free_port()}"
            sink = subprocess.Popen([sys.executable, str(Path(__file__).parent / "bare_sink.py"), sink_address,
                                     str(args.chunk + MiB)], stdout=subprocess.PIPE, text=True)
            cleanup.callback(sink.wait)
            cleanup.callback(sink.terminate)
            assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
            measures["c"] = functools.partial(bare_upload, sink_address, path, args.size, args.chunk, streams)
            measures["b"] = (functools.partial(direct_s3, stack, path, args.size, args.in_flight)
                             if args.store == "s3" else functools.partial(direct_file, stack, path))
        measures["a"] = functools.partial(quarry_upload, stack, path, args.size, args.chunk, streams)
        runs: dict[str, list[float]] = {name: [] for name in measures}
        for _ in range(args.repeat):  # interleaved: a noisy moment hits every measure alike
            for name, measure in measures.items():
                runs[name].append(asyncio.run(rate(measure, args.size)))
        figures = {name: statistics.median(values) for name, values in runs.items()}
        rss = stack.server_peak_rss()
    for name, values in runs.items():
        print(f"runs of ({name}): " + " ".join(f"{value:.0f}" for value in values) + " MB/s")
    print(f"(a) through Quarry      {figures['a']:8.1f} MB/s")
    if "b" in figures:
        label = "aioboto3 multipart" if args.store == "s3" else "file copy + fsync"
        print(f"(b) direct, {label:<12} {figures['b']:8.1f} MB/s")
        print(f"(c) bare gRPC sink      {figures['c']:8.1f} MB/s")
        print(f"a/b = {figures['a'] / figures['b']:.2f}   a/c = {figures['a'] / figures['c']:.2f}   (medians' ratios)")
        # Runs of one turn are seconds apart and share the machine's mood; their ratios vary less.
        for base in ("b", "c"):
            turns = [a / other for a, other in zip(runs["a"], runs[base], strict=True)]
            print(f"a/{base} per turn: median {statistics.median(turns):.2f}, "
                  f"range {min(turns):.2f}-{max(turns):.2f}")
    print(f"server peak RSS = {rss / MiB:.0f} MiB")


if __name__ == "__main__":
    main()
