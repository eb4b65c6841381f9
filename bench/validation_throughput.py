"""Validation throughput beside pyarrow's own read of the same file, in one run.

    python bench/validation_throughput.py --size 1GiB

For a ~1 GB CSV and a ~1 GB Parquet file in a local store, prints MB/s of (a) Quarry's validation (one
streaming pass: SHA-256, parsing, statistics, rules) and (b) pyarrow reading the same file by itself
(streaming `open_csv` with its default ReadOptions and with Quarry's own (4 MiB blocks, one thread: on this
data often pyarrow's faster setting, so the fairer bar), and `read_csv` for reference; `ParquetFile.iter_batches`
for Parquet), the ratio a/b, and the peak RSS growth of this process during each validation.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.sizes import parse_size  # noqa: E402
from server.domain.validation import validate_object  # noqa: E402
from server.domain.validation.tabular import BLOCK_BYTES  # noqa: E402
from server.model.datasets import DatasetRules  # noqa: E402
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


def pyarrow_open_csv(path: Path) -> None:
    for _ in pa_csv.open_csv(path):
        pass


def pyarrow_open_csv_quarry_options(path: Path) -> None:
    for _ in pa_csv.open_csv(path, read_options=pa_csv.ReadOptions(block_size=BLOCK_BYTES, use_threads=False)):
        pass


def pyarrow_read_csv(path: Path) -> None:
    pa_csv.read_csv(path)


def pyarrow_parquet(path: Path) -> None:
    with pq.ParquetFile(path) as parquet:
        for _ in parquet.iter_batches():
            pass


def pyarrow_parquet_streaming(path: Path) -> None:
    with pq.ParquetFile(path, pre_buffer=False) as parquet:
        for _ in parquet.iter_batches():
            pass


def _peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def quarry_validate(path: Path) -> int:
    """Quarry's validation of `path` from a local store; the rows it found."""

    size = path.stat().st_size

    async def run() -> int:
        store = await LocalStore(path.parent).open()
        report = await validate_object(store, path.name, size, path.name, "", DatasetRules(), None)
        assert report.ok, report.errors
        return report.row_count

    return asyncio.run(run())


MEASURES: dict[str, Callable[[Path], object]] = {
    "quarry": quarry_validate,
    "open_csv": pyarrow_open_csv,
    "open_csv_quarry_options": pyarrow_open_csv_quarry_options,
    "read_csv": pyarrow_read_csv,
    "parquet_defaults": pyarrow_parquet,
    "parquet_streaming": pyarrow_parquet_streaming,
}
LABELS = {
    "open_csv": "pyarrow open_csv (streaming)",
    "open_csv_quarry_options": "open_csv, 4 MiB blocks, one thread",
    "read_csv": "pyarrow read_csv",
    "parquet_defaults": "pyarrow iter_batches (defaults)",
    "parquet_streaming": "pyarrow iter_batches, pre_buffer off",
}


def measure(name: str, path: Path) -> tuple[float, int]:
    """(seconds, peak RSS) of one measure, in a fresh process so neither leaks into the other."""
    result = subprocess.run([sys.executable, __file__, "--child", name, str(path)], capture_output=True, text=True,
                            check=True)
    seconds, peak = result.stdout.split()
    return float(seconds), int(peak)


def child(name: str, path: Path) -> None:
    baseline = _peak_rss()
    started = time.perf_counter()
    MEASURES[name](path)
    print(time.perf_counter() - started, _peak_rss() - baseline)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=parse_size, default=1 << 30)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return
    cases = [("CSV", make_csv(args.size), ["open_csv", "open_csv_quarry_options", "read_csv"]),
             ("Parquet", make_parquet(args.size), ["parquet_defaults", "parquet_streaming"])]
    for label, path, baselines in cases:
        size = path.stat().st_size
        runs: dict[str, list[tuple[float, int]]] = {name: [] for name in ["quarry", *baselines]}
        for _ in range(args.repeat):  # interleaved, so a noisy moment hits every measure alike
            for name in runs:
                runs[name].append(measure(name, path))
        rate = {name: size / statistics.median(r[0] for r in results) / 1e6 for name, results in runs.items()}
        spread = {name: f"{size / max(t for t, _ in results) / 1e6:.1f}-{size / min(t for t, _ in results) / 1e6:.1f}"
                  for name, results in runs.items()}
        print(f"{label}: {size / 1e6:.0f} MB, {args.repeat} runs each (median MB/s, min-max)")
        print(f"  (a) Quarry validation                  {rate['quarry']:8.1f} MB/s ({spread['quarry']})   "
              f"(peak RSS +{max(r[1] for r in runs['quarry']) / 2**20:.0f} MiB)")
        for name in baselines:
            peak = max(r[1] for r in runs[name]) / 2**20
            print(f"  (b) {LABELS[name]:<36} {rate[name]:8.1f} MB/s ({spread[name]})   "
                  f"a/b = {rate['quarry'] / rate[name]:.2f}   (peak RSS +{peak:.0f} MiB)")


if __name__ == "__main__":
    main()
