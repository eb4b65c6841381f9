"""Server memory under load: stalled streams, many concurrent uploads, one large upload.

    python bench/memory_load.py stalled [--clients 200] [--sent 16MiB] [--hold 20]
    python bench/memory_load.py uploads [--clients 64] [--size 20MB]
    python bench/memory_load.py single [--size 2GiB]
    python bench/memory_load.py all

Starts a throwaway stack on the local store (bench/stack.py) and prints, for each scenario, the server's
resident size at the start, its peak (VmHWM) and where it settles after the clients leave; for stalled
streams also the latency of other clients' GetDataset calls meanwhile (p50/p99/max, and how many failed)
and how the stalled streams ended. The scenario functions take an address and a server pid, so the fault
suite (tests/faults/) runs the same measurements with assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psutil
from grpc import aio
from quarry.v1 import dataset_service_pb2 as dpb
from quarry.v1 import dataset_service_pb2_grpc, upload_pb2, upload_service_pb2_grpc
from quarry.v1 import upload_service_pb2 as pb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.aio_calls import finish  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30
CHUNK = MiB
NAMESPACE = "bench"  # where the clients act; `token` (of every scenario) must be granted on it
_BLOCK = os.urandom(CHUNK)


def rss(pid: int) -> int:
    """Resident bytes of a process now."""
    return int(psutil.Process(pid).memory_info().rss)


def peak_rss(pid: int) -> int:
    """Peak resident bytes of a process since it started (or since `reset_peak`)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def reset_peak(pid: int) -> None:
    """Start the peak over from the current resident size (Linux: writing 5 to clear_refs)."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


async def settle(pid: int, target: int, timeout: float) -> tuple[int, float]:
    """Wait until the resident size is at most `target` (or `timeout` passed): (resident bytes, seconds)."""
    started = time.monotonic()
    while True:
        now = rss(pid)
        if now <= target or time.monotonic() - started > timeout:
            return now, time.monotonic() - started
        await asyncio.sleep(0.2)


def _metadata(token: str) -> tuple[tuple[str, str], ...]:
    return (("x-quarry-namespace", NAMESPACE), ("authorization", f"Bearer {token}"))


def _channel(address: str) -> aio.Channel:
    return aio.insecure_channel(address, options=[("grpc.max_send_message_length", 64 * MiB),
                                                  ("grpc.max_receive_message_length", 64 * MiB)])


def _header(dataset: str, path: str, size: int, sha256: str = "") -> pb.UploadRequest:
    fields = upload_pb2.Upload(dataset=dataset, path=path, declared_size_bytes=size, declared_sha256=sha256)
    return pb.UploadRequest(header=pb.UploadHeader(create=pb.CreateUploadRequest(upload=fields)))


def _chunk(data: bytes) -> pb.UploadRequest:
    return pb.UploadRequest(chunk=pb.UploadChunk(data=data))


@dataclass
class Latencies:
    """Latencies of probe calls, and the status codes of those that failed."""

    seconds: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)

    def quantile(self, q: float) -> float:
        if not self.seconds:
            return float("nan")
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def line(self) -> str:
        if not self.seconds:
            return f"no call answered; failures {dict(self.failures)}"
        return (f"{len(self.seconds)} calls, p50 {self.quantile(0.5) * 1000:.1f} ms, p99 "
                f"{self.quantile(0.99) * 1000:.1f} ms, max {max(self.seconds) * 1000:.1f} ms, "
                f"failures {dict(self.failures) or 0}")


async def probe_get_dataset(address: str, token: str, dataset: str, stop: asyncio.Event, out: Latencies,
                            concurrency: int = 4, deadline: float = 5.0) -> None:
    """GetDataset in a loop from `concurrency` callers on one channel until `stop`: what other clients see."""
    async with _channel(address) as channel:
        stub = dataset_service_pb2_grpc.DatasetServiceStub(channel)
        name = f"namespaces/{NAMESPACE}/datasets/{dataset}"

        async def caller() -> None:
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    await stub.GetDataset(dpb.GetDatasetRequest(name=name), metadata=_metadata(token),
                                          timeout=deadline)
                    out.seconds.append(time.perf_counter() - started)
                except aio.AioRpcError as exc:
                    out.failures[exc.code().name] += 1
                await asyncio.sleep(0.02)

        await asyncio.gather(*(caller() for _ in range(concurrency)))


async def ensure_dataset(address: str, token: str, dataset: str) -> None:
    """Create the dataset the probes read (ALREADY_EXISTS is fine)."""
    async with _channel(address) as channel:
        stub = dataset_service_pb2_grpc.DatasetServiceStub(channel)
        with contextlib.suppress(aio.AioRpcError):
            await stub.CreateDataset(dpb.CreateDatasetRequest(parent=f"namespaces/{NAMESPACE}", dataset_id=dataset),
                                     metadata=_metadata(token), timeout=30)


@dataclass
class StalledFigures:
    """What 200 stalled streams did to the server."""

    clients: int
    start_rss: int
    peak_rss: int
    after_rss: int
    settle_seconds: float
    probe: Latencies
    endings: Counter[str]
    sent_bytes: int

    def lines(self) -> list[str]:
        return [f"stalled streams: {self.clients} clients, {self.sent_bytes / MiB:.0f} MiB sent in all",
                f"  server RSS start {self.start_rss / MiB:.0f} MiB, peak {self.peak_rss / MiB:.0f} MiB, "
                f"after {self.after_rss / MiB:.0f} MiB (settled in {self.settle_seconds:.1f} s)",
                f"  GetDataset meanwhile: {self.probe.line()}",
                f"  stalled streams ended by: {dict(self.endings)}"]


async def stalled_streams(address: str, pid: int, *, token: str, clients: int = 200, sent: int = 16 * MiB,
                          size: int = 512 * MiB, hold: float = 20.0, leave_after_end: bool = False,
                          dataset: str = "stalled") -> StalledFigures:
    """`clients` clients (one connection each) each open an upload of `size`, send a header and `sent` bytes,
    then send nothing for `hold` seconds (or until the server ends their stream) and leave."""
    await ensure_dataset(address, token, "probed")
    start = rss(pid)
    reset_peak(pid)
    stop_probe = asyncio.Event()
    probe = Latencies()
    prober = asyncio.create_task(probe_get_dataset(address, token, "probed", stop_probe, probe))
    endings: Counter[str] = Counter()
    total = [0]
    leave = asyncio.Event()

    async def client(number: int) -> None:
        async with _channel(address) as channel:
            stub = upload_service_pb2_grpc.UploadServiceStub(channel)

            async def requests() -> AsyncIterator[pb.UploadRequest]:
                yield _header(dataset, f"s{number}.bin", size)
                for _ in range(sent // CHUNK):
                    yield _chunk(_BLOCK)
                    total[0] += CHUNK
                await leave.wait()  # stall: the stream stays open and sends nothing

            call = stub.Upload(requests(), metadata=_metadata(token))
            try:
                await asyncio.wait_for(finish(call), hold)
                endings["OK"] += 1
            except TimeoutError:
                endings["still open when the client left"] += 1
                call.cancel()
            except aio.AioRpcError as exc:
                endings[exc.code().name] += 1

    await asyncio.gather(*(client(n) for n in range(clients)))
    leave.set()
    stop_probe.set()
    await prober
    peak = peak_rss(pid)
    after, seconds = await settle(pid, start + 50 * MiB, 30)
    return StalledFigures(clients, start, peak, after, seconds, probe, endings, total[0])


@dataclass
class UploadFigures:
    """Concurrent whole uploads: memory, time, outcomes."""

    clients: int
    size: int
    start_rss: int
    peak_rss: int
    after_rss: int
    seconds: float
    outcomes: Counter[str]

    def lines(self) -> list[str]:
        rate = self.clients * self.size / self.seconds / 1e6
        return [f"concurrent uploads: {self.clients} x {self.size / 1e6:.0f} MB in {self.seconds:.1f} s "
                f"({rate:.0f} MB/s), outcomes {dict(self.outcomes)}",
                f"  server RSS start {self.start_rss / MiB:.0f} MiB, peak {self.peak_rss / MiB:.0f} MiB, "
                f"after {self.after_rss / MiB:.0f} MiB"]


async def _whole_upload(stub: upload_service_pb2_grpc.UploadServiceStub, token: str, dataset: str, path: str,
                        size: int, block: bytes) -> pb.UploadResponse:
    """One file of `size` bytes (`block` repeated) in one call, with its sha256 declared."""
    digest = hashlib.sha256()
    for start in range(0, size, len(block)):
        digest.update(block[:min(len(block), size - start)])

    async def requests() -> AsyncIterator[pb.UploadRequest]:
        yield _header(dataset, path, size, digest.hexdigest())
        for start in range(0, size, len(block)):
            yield _chunk(block[:min(len(block), size - start)])
        yield pb.UploadRequest(finish=pb.UploadFinish())

    response: pb.UploadResponse = await finish(stub.Upload(requests(), metadata=_metadata(token), timeout=600))
    return response


async def concurrent_uploads(address: str, pid: int, *, token: str, clients: int = 64, size: int = 20_000_000,
                             dataset: str = "many", retries: bool = True) -> UploadFigures:
    """`clients` clients (one connection each) upload a `size`-byte file at once. A RESOURCE_EXHAUSTED
    answer (the server's buffer budget is spent) is retried after its RetryInfo delay when `retries`."""
    start = rss(pid)
    reset_peak(pid)
    outcomes: Counter[str] = Counter()

    async def client(number: int) -> None:
        async with _channel(address) as channel:
            stub = upload_service_pb2_grpc.UploadServiceStub(channel)
            for _ in range(100):
                try:
                    response = await _whole_upload(stub, token, dataset, f"u{number}.bin", size, _BLOCK)
                    outcomes[upload_pb2.UploadState.Name(response.upload.state)] += 1
                    return
                except aio.AioRpcError as exc:
                    if not retries or exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                        outcomes[exc.code().name] += 1
                        return
                    outcomes["retried RESOURCE_EXHAUSTED"] += 1
                    await asyncio.sleep(0.5)

    started = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    seconds = time.perf_counter() - started
    peak = peak_rss(pid)
    after, _ = await settle(pid, start + 50 * MiB, 10)
    return UploadFigures(clients, size, start, peak, after, seconds, outcomes)


async def single_upload(address: str, pid: int, *, token: str, size: int = 2 * GiB,
                        dataset: str = "single") -> UploadFigures:
    """One `size`-byte upload in one call."""
    start = rss(pid)
    reset_peak(pid)
    outcomes: Counter[str] = Counter()
    started = time.perf_counter()
    async with _channel(address) as channel:
        stub = upload_service_pb2_grpc.UploadServiceStub(channel)
        try:
            response = await _whole_upload(stub, token, dataset, "big.bin", size, _BLOCK)
            outcomes[upload_pb2.UploadState.Name(response.upload.state)] += 1
        except aio.AioRpcError as exc:
            outcomes[exc.code().name] += 1
    seconds = time.perf_counter() - started
    peak = peak_rss(pid)
    after, _ = await settle(pid, start + 50 * MiB, 10)
    return UploadFigures(1, size, start, peak, after, seconds, outcomes)


class _Sampler(threading.Thread):
    """Samples a process's RSS (for the printout only: VmHWM is the peak that counts)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.1):
            with contextlib.suppress(psutil.Error):
                self.samples.append(rss(self.pid))


def main() -> None:
    from bench.stack import quarry_stack
    from bench.upload_throughput import parse_size

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=["stalled", "uploads", "single", "all"])
    parser.add_argument("--clients", type=int, default=0, help="default: 200 stalled, 64 uploads")
    parser.add_argument("--sent", type=parse_size, default=16 * MiB, help="bytes each stalled client sends")
    parser.add_argument("--hold", type=float, default=20.0, help="seconds stalled clients stay")
    parser.add_argument("--size", type=parse_size, default=0, help="default: 20 MB uploads, 2 GiB single")
    parser.add_argument("--env", action="append", default=[], help="QUARRY_X=value for the server (repeatable)")
    args = parser.parse_args()
    extra = dict(item.split("=", 1) for item in args.env)
    scenarios = ["stalled", "uploads", "single"] if args.scenario == "all" else [args.scenario]
    with quarry_stack("file", extra) as stack:
        pid = stack.server.pid
        print(f"server pid {pid}, settings {extra or 'default'}", flush=True)
        for scenario in scenarios:
            sampler = _Sampler(pid)
            sampler.start()
            if scenario == "stalled":
                figures: StalledFigures | UploadFigures = asyncio.run(stalled_streams(
                    stack.address, pid, token=stack.token, clients=args.clients or 200, sent=args.sent, hold=args.hold))
            elif scenario == "uploads":
                figures = asyncio.run(concurrent_uploads(stack.address, pid, token=stack.token,
                                                         clients=args.clients or 64, size=args.size or 20_000_000))
            else:
                figures = asyncio.run(single_upload(stack.address, pid, token=stack.token, size=args.size or 2 * GiB))
            sampler.stop.set()
            sampler.join()
            for line in figures.lines():
                print(line, flush=True)
            if sampler.samples:
                print(f"  sampled RSS: median {statistics.median(sampler.samples) / MiB:.0f} MiB over "
                      f"{len(sampler.samples)} samples", flush=True)


if __name__ == "__main__":
    main()
