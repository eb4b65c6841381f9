"""PreviewFile latency on a ~1 GB Parquet file with ~128 MB row groups, beside pyarrow's own read, in one run.

    python bench/preview_latency.py [--size 1GiB] [--rows 100] [--repeat 30] [--s3]

Runs Quarry's preview (`server.domain.preview.preview_file`: footer, the pages of the first row group that
hold the rows, Arrow IPC and JSON encoding) in this process against a local store, and with --s3 against
moto's S3 server too. Prints its median and p95 latency and the bytes it read, next to what pyarrow takes to
read the footer and the first rows of the same local file by itself, and to read the whole first row group
(what a preview that fetched whole column chunks would pay). On S3 it also prints the number of range
requests and what one range GET costs on moto (which copies the whole object for every request, so its
figures measure moto more than Quarry: the request count is what carries over to a real store).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.sizes import parse_size  # noqa: E402
from bench.stack import BUCKET, moto_server  # noqa: E402
from server.domain.preview import preview_file  # noqa: E402
from server.model.datasets import FileFormat  # noqa: E402
from server.model.locations import S3Location  # noqa: E402
from server.model.objects import ObjectStore  # noqa: E402
from server.model.report import ColumnInfo  # noqa: E402
from server.model.versions import FileReport, VersionFile  # noqa: E402
from server.storage.objects.local import LocalStore  # noqa: E402
from server.storage.objects.s3 import S3Store  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
ROWS_PER_GROUP = 7_000_000  # about 128 MB compressed with the columns below
GROUP_BYTES = 129e6


def _table(rows: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    categories = pa.array([f"cat-{i}" for i in range(1000)])
    return pa.table({
        "id": np.arange(seed * rows, (seed + 1) * rows),
        "amount": rng.random(rows) * 1000,
        "count": rng.integers(0, 1_000_000, rows),
        "category": pa.DictionaryArray.from_arrays(pa.array(rng.integers(0, 1000, rows), pa.int32()), categories),
        "flag": rng.random(rows) < 0.5,
    })


def make_parquet(size: int) -> Path:
    """A Parquet file of about `size` bytes in row groups of ROWS_PER_GROUP rows (kept under bench/out/)."""
    OUT.mkdir(exist_ok=True)
    path = OUT / f"preview-{size}.parquet"
    if not path.exists():
        partial = path.with_suffix(".partial")
        with pq.ParquetWriter(partial, _table(1, 0).schema, compression="snappy") as writer:
            for group in range(max(1, round(size / GROUP_BYTES))):
                writer.write_table(_table(ROWS_PER_GROUP, group), row_group_size=ROWS_PER_GROUP)
        partial.rename(path)
    return path


def version_file(path: Path, key: str) -> VersionFile:
    """The VersionFile validation would have stored for the file."""
    with pq.ParquetFile(path) as parquet:
        schema, rows = parquet.schema_arrow, parquet.metadata.num_rows
    columns = tuple(ColumnInfo(f.name, str(f.type), f.nullable) for f in schema)
    return VersionFile(path=path.name, object_key=key, size=path.stat().st_size, sha256="", format=FileFormat.PARQUET,
                       content_type="", columns=columns, row_count=rows,
                       report=FileReport(FileFormat.PARQUET, "magic", rows, 0, 0), stats=(),
                       arrow_schema=schema.serialize().to_pybytes())


class CountingStore:
    """A store that counts the range reads it serves."""

    def __init__(self, inner: ObjectStore) -> None:
        self._inner = inner
        self.requests = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    def read(self, key: str, offset: int = 0, length: int | None = None,
             chunk_bytes: int = 1 << 20) -> AsyncIterator[bytes]:
        self.requests += 1
        return self._inner.read(key, offset, length, chunk_bytes)


async def measure_preview(store: ObjectStore, file: VersionFile, rows: int,
                          repeat: int) -> tuple[list[float], int, int]:
    """Seconds of each preview, and the bytes and store requests of one preview."""
    counting = CountingStore(store)
    first = await preview_file(counting, file, rows)  # type: ignore[arg-type]  # also warms imports, page cache
    assert first.row_count == rows, first.row_count
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await preview_file(store, file, rows)
        times.append(time.perf_counter() - started)
    return times, first.bytes_read, counting.requests


async def measure_range_get(store: ObjectStore, key: str, repeat: int) -> list[float]:
    """Seconds of one 64 KiB range read from the store: the cost of a round trip."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        async for _chunk in store.read(key, 0, 64 << 10):
            pass
        times.append(time.perf_counter() - started)
    return times


def timed(run: Callable[[], object], repeat: int) -> list[float]:
    """Seconds of each run."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return times


def pyarrow_footer(path: Path) -> None:
    pq.read_metadata(path)


def pyarrow_first_rows(path: Path, rows: int) -> Callable[[], object]:
    def run() -> object:
        with pq.ParquetFile(path) as parquet:
            return next(parquet.iter_batches(batch_size=rows))
    return run


def pyarrow_first_group(path: Path) -> Callable[[], object]:
    def run() -> object:
        with pq.ParquetFile(path) as parquet:
            return parquet.read_row_group(0)
    return run


def p95(times: list[float]) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def line(label: str, times: list[float], extra: str = "") -> None:
    print(f"  {label:<48} median {statistics.median(times) * 1e3:8.2f} ms   p95 {p95(times) * 1e3:8.2f} ms{extra}")


@contextlib.asynccontextmanager
async def s3_store(path: Path) -> AsyncIterator[tuple[ObjectStore, str]]:
    """moto's S3 server holding the file."""
    with tempfile.TemporaryDirectory(prefix="quarry-bench-") as work, moto_server(Path(work)) as endpoint:
        store = await S3Store(S3Location(BUCKET, "", endpoint, "us-east-1"), "bench", "bench").open()
        try:
            key = f"fresh/bench/objects/{hashlib.sha256(path.name.encode()).hexdigest()}"

            async def chunks() -> AsyncIterator[bytes]:
                with path.open("rb") as source:
                    while piece := await asyncio.to_thread(source.read, 64 << 20):
                        yield piece

            await store.put(key, chunks())
            yield store, key
        finally:
            await store.close()


async def run(args: argparse.Namespace) -> None:
    path = make_parquet(args.size)
    metadata = pq.read_metadata(path)
    first_group = metadata.row_group(0)
    compressed = sum(first_group.column(i).total_compressed_size for i in range(first_group.num_columns))
    print(f"{path.name}: {path.stat().st_size / 1e6:.0f} MB, {metadata.num_rows} rows, {metadata.num_row_groups} "
          f"row groups (the first: {first_group.num_rows} rows, {compressed / 1e6:.0f} MB compressed)")
    print(f"first {args.rows} rows, {args.repeat} runs each:")
    local = await LocalStore(path.parent).open()
    times, bytes_read, _ = await measure_preview(local, version_file(path, path.name), args.rows, args.repeat)
    line("Quarry preview, local store", times, f"   read {bytes_read / 1e6:.2f} MB (pread)")
    line("pyarrow: footer (read_metadata)", timed(lambda: pyarrow_footer(path), args.repeat))
    line(f"pyarrow: footer + first {args.rows} rows (iter_batches)",
         timed(pyarrow_first_rows(path, args.rows), args.repeat))
    line("pyarrow: the whole first row group", timed(pyarrow_first_group(path), min(args.repeat, 5)))
    if args.s3:
        async with s3_store(path) as (store, key):
            repeat = min(args.repeat, 5)  # moto answers each request of a 1 GB object slowly
            times, bytes_read, requests = await measure_preview(store, version_file(path, key), args.rows, repeat)
            line("Quarry preview, S3 (moto)", times, f"   read {bytes_read / 1e6:.2f} MB in {requests} requests")
            line("moto: one 64 KiB range GET of the same object", await measure_range_get(store, key, repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=parse_size, default=1 << 30)
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--s3", action="store_true", help="also preview the file from moto's S3 server")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
