"""Validation throughput beside pyarrow's own read of the same file, in one run.

    python bench/validation_throughput.py --size 1GiB

For a ~1 GB CSV and a ~1 GB Parquet file in a local store, prints MB/s of (a) Quarry's validation (one
streaming pass: SHA-256, parsing, statistics, rules) and (b) pyarrow reading the same file by itself
(streaming `open_csv`, and `read_csv` for reference; `ParquetFile.iter_batches` for Parquet), the ratio a/b,
and the peak RSS growth of this process during each validation.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.upload_throughput import parse_size  # noqa: E402
from server.domain.models import DatasetRules  # noqa: E402
from server.domain.validation import validate_object  # noqa: E402
from server.storage.objects.local import LocalStore  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"


def _batch(rows: int, seed: int) -> pa.RecordBatch:
    rng = np.random.default_rng(seed)
    ids = np.arange(seed * rows, (seed + 1) * rows)
    return pa.record_batch({
        "id": ids,
        "amount": rng.random(rows) * 1000,
        "count": rng.integers(0, 1_000_000, rows),
        "category": pa.array([f"cat-{i % 1000}" for i in ids]),
        "flag": rng.random(rows) < 0.5,
    })


def make_csv(size: int) -> Path:
    """A CSV of about `size` bytes (kept under bench/out/)."""
    OUT.mkdir(exist_ok=True)
    path = OUT / f"validate-{size}.csv"
    if not path.exists():
        with pa_csv.CSVWriter(path, _batch(10, 0).schema) as writer:
            seed = 0
            while path.stat().st_size < size:
                writer.write_batch(_batch(200_000, seed))
                seed += 1
    return path


def make_parquet(size: int) -> Path:
    """A Parquet file of about `size` bytes, in 128 MB row groups (kept under bench/out/)."""
    OUT.mkdir(exist_ok=True)
    path = OUT / f"validate-{size}.parquet"
    if not path.exists():
        schema = _batch(10, 0).schema
        with pq.ParquetWriter(path, schema, compression="snappy") as writer:
            seed = 0
            while path.stat().st_size < size:
                writer.write_table(pa.Table.from_batches([_batch(1_000_000, seed)]), row_group_size=1_000_000)
                seed += 1
    return path


def timed(run: Callable[[], None], repeat: int) -> float:
    """Median seconds."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def pyarrow_open_csv(path: Path) -> None:
    for _ in pa_csv.open_csv(path):
        pass


def pyarrow_read_csv(path: Path) -> None:
    pa_csv.read_csv(path)


def pyarrow_parquet(path: Path) -> None:
    with pq.ParquetFile(path) as parquet:
        for _ in parquet.iter_batches():
            pass


def quarry_validate(path: Path) -> tuple[float, int, int]:
    """(seconds, rows, peak RSS growth in bytes) of Quarry's validation of `path` from a local store."""

    size = path.stat().st_size

    async def run() -> tuple[float, int]:
        store = await LocalStore(path.parent).open()
        started = time.perf_counter()
        report = await validate_object(store, path.name, size, path.name, "", DatasetRules(), None)
        elapsed = time.perf_counter() - started
        assert report.ok, report.errors
        return elapsed, report.row_count

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    elapsed, rows = asyncio.run(run())
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return elapsed, rows, (after - before) * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=parse_size, default=1 << 30)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    csv_path, parquet_path = make_csv(args.size), make_parquet(args.size)
    # Quarry runs first, so this process's peak RSS growth is its own (pyarrow's read_csv holds a whole table).
    cases = [("CSV", csv_path, {"pyarrow open_csv (streaming)": pyarrow_open_csv,
                                "pyarrow read_csv": pyarrow_read_csv}),
             ("Parquet", parquet_path, {"pyarrow iter_batches": pyarrow_parquet})]
    runs = {label: [quarry_validate(path) for _ in range(args.repeat)] for label, path, _ in cases}
    for label, path, baselines in cases:
        size = path.stat().st_size
        figures = {name: size / timed(functools.partial(func, path), args.repeat) / 1e6
                   for name, func in baselines.items()}
        quarry = size / statistics.median(r[0] for r in runs[label]) / 1e6
        grew = max(r[2] for r in runs[label]) / 2**20
        print(f"{label}: {size / 1e6:.0f} MB, {runs[label][0][1]} rows")
        print(f"  (a) Quarry validation              {quarry:8.1f} MB/s   (peak RSS grew {grew:.0f} MiB)")
        for name, rate in figures.items():
            print(f"  (b) {name:<30} {rate:8.1f} MB/s   a/b = {quarry / rate:.2f}")


if __name__ == "__main__":
    main()
