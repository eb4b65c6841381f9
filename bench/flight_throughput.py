"""Arrow Flight DoGet of a 1 GB Parquet file, next to pyarrow reading the same file from local disk.

    python -m bench.flight_throughput [--size-mb 1024] [--repeat 3]

One run starts a throwaway stack on the local store (Postgres, Redis, a server with Flight on, a worker),
uploads the file, then measures, interleaved so that the machine's load falls on each alike:
- pyarrow: `ParquetFile(path).iter_batches` from local disk (the ceiling: no network, no server);
- Flight, one stream: one DoGet of the whole file (a ticket naming no row groups);
- Flight, endpoints in parallel: GetFlightInfo's endpoints (64 MiB of row groups each), two streams at once.
Each line prints the median (and min-max) of rows/s and MB/s, MB being the file's bytes, the same for all.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.flight as flight
import pyarrow.parquet as pq
import quarry

from bench.big_parquet import make_big_parquet
from bench.stack import ROOT, quarry_stack
from server.listen_ports import free_port

BATCH_ROWS = 64 * 1024  # as the server's DoGet reads


def local_read(path: Path) -> int:
    rows = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS):
        rows += batch.num_rows
    return rows


def flight_one(location: str, namespace: str, version: str) -> int:
    client = flight.connect(location)
    call = flight.FlightCallOptions(headers=[(b"x-quarry-namespace", namespace.encode())])
    ticket = flight.Ticket(json.dumps({"version": version, "path": "big.parquet"}))
    rows = sum(chunk.data.num_rows for chunk in client.do_get(ticket, call))
    client.close()
    return rows


def flight_parallel(location: str, namespace: str, streams: int = 2) -> int:
    client = flight.connect(location)
    call = flight.FlightCallOptions(headers=[(b"x-quarry-namespace", namespace.encode())])
    info = client.get_flight_info(flight.FlightDescriptor.for_path(namespace, "big", "1", "big.parquet"), call)

    def read(endpoint: flight.FlightEndpoint) -> int:
        return sum(chunk.data.num_rows for chunk in client.do_get(endpoint.ticket, call))

    with ThreadPoolExecutor(streams) as pool:
        rows = sum(pool.map(read, info.endpoints))
    client.close()
    return rows


def timed(run: Callable[[], int]) -> tuple[float, int]:
    started = time.perf_counter()
    rows = run()
    return time.perf_counter() - started, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    flight_address = f"127.0.0.1:{free_port()}"
    with tempfile.TemporaryDirectory(prefix="quarry-flight-") as tmp, \
            quarry_stack("file", {"QUARRY_FLIGHT_ADDRESS": flight_address}) as stack:
        path = Path(tmp) / "big.parquet"
        rows = make_big_parquet(path, args.size_mb << 20)
        size = path.stat().st_size
        worker = subprocess.Popen([sys.executable, "-m", "workers"], env=stack.env, cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            namespace = "bench"
            with quarry.Client(stack.address, namespace=namespace, cache_dir=Path(tmp) / "cache") as client:
                client.upload_file(path, "big", "big.parquet", wait=True, wait_timeout=1800)
        finally:
            worker.terminate()
            worker.wait(30)
        version = f"namespaces/{namespace}/datasets/big/versions/1"
        location = f"grpc+tcp://{flight_address}"
        runs: dict[str, Callable[[], int]] = {
            "pyarrow, local disk": lambda: local_read(path),
            "Flight DoGet, one stream": lambda: flight_one(location, namespace, version),
            "Flight DoGet, endpoints, 2 streams": lambda: flight_parallel(location, namespace),
        }
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.repeat):
            for name, run in runs.items():
                took, got = timed(run)
                assert got == rows, (name, got, rows)
                times[name].append(took)
        print(f"{size / 1e6:,.0f} MB Parquet, {rows:,} rows x 10 float64 columns; medians of {args.repeat} "
              f"interleaved runs (min-max)")
        for name, seconds in times.items():
            best, worst, median = min(seconds), max(seconds), statistics.median(seconds)
            print(f"  {name:<36} {rows / median:>13,.0f} rows/s ({rows / worst:,.0f}-{rows / best:,.0f})  "
                  f"{size / median / 1e6:>6,.0f} MB/s ({size / worst / 1e6:,.0f}-{size / best / 1e6:,.0f})")
        print(f"  server peak RSS {stack.server_peak_rss() / (1 << 20):,.0f} MiB")


if __name__ == "__main__":
    main()
