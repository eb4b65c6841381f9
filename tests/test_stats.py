"""Full column statistics from the validation pass, checked against pyarrow and numpy on the same data.

Exact: count, nulls, min, max, mean (to floating-point rounding), standard deviation, top values, histogram
counts, the distinct count of a column of at most 1,000 values. Within a stated error: the HyperLogLog
distinct estimate (1.6 % standard error: 5 % allowed), the KLL quantiles (rank error 1.33 % with 99 %
confidence: 2 % allowed). Then GetFileStats and `quarry stats` through a real server.
"""

from __future__ import annotations

import io
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from server.domain.validation import stats as stats_module
from server.domain.validation import validate_object
from server.domain.validation.sketches import BINS, Histogram
from server.model.datasets import DatasetRules
from server.model.report import ColumnStats
from server.storage.objects.memory import BytesObject
from tests.sdk_support import Cli, new_namespace
from tests.support import ServerHandle

ROWS = 120_000


def table() -> pa.Table:
    rng = np.random.default_rng(7)
    amount = rng.normal(250.0, 40.0, ROWS)
    amount[rng.random(ROWS) < 0.05] = np.nan  # CSV nulls
    return pa.table({
        "id": np.arange(ROWS) * 3 - 1000,
        "amount": pa.array(amount, from_pandas=True),
        "count": rng.integers(0, 50_000, ROWS),
        "city": pa.array([f"city-{i}" for i in rng.zipf(1.6, ROWS) % 40]),
        "flag": rng.random(ROWS) < 0.25,
        "code": pa.array([f"c{i:07d}" for i in rng.permutation(ROWS)]),
    })


async def stats_of(data: bytes, path: str) -> tuple[dict[str, ColumnStats], int]:
    report = await validate_object(BytesObject(data), "k", len(data), path, "", DatasetRules(), None)
    assert report.ok, report.errors
    return {s.name: s for s in report.stats}, report.row_count


def csv_bytes(value: pa.Table) -> bytes:
    sink = io.BytesIO()
    pa_csv.write_csv(value, sink)
    return sink.getvalue()


def parquet_bytes(value: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(value, sink, row_group_size=30_000)
    return sink.getvalue()


def check_against_numpy(stats: dict[str, ColumnStats], expected: pa.Table) -> None:
    for name in expected.column_names:
        column = expected.column(name).combine_chunks()
        got = stats[name]
        assert got.null_count == column.null_count, name
        assert got.count == len(column) - column.null_count, name
        if pa.types.is_string(column.type):
            assert (got.min, got.max) == (pc.min(column).as_py(), pc.max(column).as_py())
            assert got.mean is None and got.quantiles == () and got.histogram == ()
        values = column.drop_null()
        if pa.types.is_boolean(column.type):
            shares = np.asarray(values.cast(pa.uint8()).to_numpy(), dtype=np.float64)
            assert got.mean == pytest.approx(shares.mean(), rel=1e-12) and got.stddev == pytest.approx(shares.std())
            assert got.quantiles == () and got.histogram == ()
        elif pa.types.is_integer(values.type) or pa.types.is_floating(values.type):
            numbers = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)
            assert float(got.min) == numbers.min() and float(got.max) == numbers.max(), name
            assert got.mean == pytest.approx(numbers.mean(), rel=1e-12), name
            assert got.stddev == pytest.approx(numbers.std(), rel=1e-9), name
            ordered = np.sort(numbers)
            for probability, value in got.quantiles:
                rank = np.searchsorted(ordered, value, side="right") / len(ordered)
                low = np.searchsorted(ordered, value, side="left") / len(ordered)
                assert low - 0.02 <= probability <= rank + 0.02, (name, probability, value)
            buckets = got.histogram
            assert 1 <= len(buckets) <= 20 and buckets[0].lower == numbers.min() and buckets[-1].upper == numbers.max()
            assert sum(b.count for b in buckets) == len(numbers)
            for index, bucket in enumerate(buckets):
                last = index == len(buckets) - 1
                inside = (numbers >= bucket.lower) & ((numbers <= bucket.upper) if last else (numbers < bucket.upper))
                assert bucket.count == int(inside.sum()), (name, bucket)
        distinct = len(pc.unique(column.drop_null()))
        if distinct <= 1000:
            assert got.distinct_exact and got.distinct_estimate == distinct, name
            counted = pc.value_counts(column.drop_null()).to_pylist()
            top = sorted(((str(v["values"]).lower() if isinstance(v["values"], bool) else str(v["values"]),
                           v["counts"]) for v in counted), key=lambda t: (-t[1], t[0]))[:10]
            assert list(got.top_values) == top, name
        else:
            assert not got.distinct_exact and got.top_values == ()
            assert abs(got.distinct_estimate - distinct) / distinct < 0.05, (name, got.distinct_estimate, distinct)


async def test_csv_statistics_match_numpy() -> None:
    expected = table()
    stats, rows = await stats_of(csv_bytes(expected), "t.csv")
    assert rows == ROWS
    check_against_numpy(stats, pa_csv.read_csv(io.BytesIO(csv_bytes(expected))))


async def test_parquet_statistics_match_numpy_from_every_page() -> None:
    expected = table()
    stats, rows = await stats_of(parquet_bytes(expected), "t.parquet")
    assert rows == ROWS
    check_against_numpy(stats, expected)


async def test_jsonl_and_edge_columns() -> None:
    lines = b"".join(b'{"x": %d, "y": null, "z": 1.5}\n' % i for i in range(100))
    stats, _ = await stats_of(lines + b'{"x": 5, "y": null, "z": 1.5}\n', "e.jsonl")
    assert stats["x"].top_values[0] == ("5", 2) and stats["x"].distinct_estimate == 100
    assert stats["y"].count == 0 and stats["y"].mean is None and stats["y"].histogram == ()
    # Every value equal: one bucket, no spread.
    assert stats["z"].histogram[0].count == 101 and len(stats["z"].histogram) == 1 and stats["z"].stddev == 0


async def test_dates_times_and_timestamps_of_many_values_get_a_distinct_estimate() -> None:
    # Over MAX_DISTINCT values, temporal columns are hashed by their integers (a time column used to fail validation
    # with a TypeError here). Seconds of a day, days from 2000, and timestamps with nulls; 5,000 distinct of each.
    rows = [f"{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d},{2000 + i // 365}-{i % 12 + 1:02d}-{i % 28 + 1:02d},"
            + ("" if i % 10 == 0 else f"2024-01-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}.{i % 7}")
            for i in range(5000)]
    data = ("t,d,ts\n" + "\n".join(rows) + "\n").encode()
    stats, rows_read = await stats_of(data, "times.csv")
    expected = pa_csv.read_csv(io.BytesIO(data))
    assert rows_read == 5000 and expected.column("t").type == pa.time32("s")
    for name in ("t", "d", "ts"):
        column = expected.column(name)
        distinct = len(pc.unique(column.drop_null()))
        got = stats[name]
        assert not got.distinct_exact and abs(got.distinct_estimate - distinct) / distinct < 0.05, (name, got)
        assert got.null_count == column.null_count and got.count == len(column) - column.null_count


def test_statistics_do_not_import_pandas() -> None:
    # A fresh worker would pay ~0.2 s of CPU, holding the GIL, for pyarrow's lazy pandas import (to_numpy and
    # Python scalars trigger it): the numeric columns are read through their buffers instead.
    script = """
import asyncio, sys
from server.domain.validation import validate_object
from server.model.datasets import DatasetRules
from server.storage.objects.memory import BytesObject
data = b"i,f,s,t\\n" + b"".join(b"%d,%s,s%d,2024-01-01T00:00:%02d\\n" % (i, b"" if i % 7 else b"%d.5" % i, i, i % 60)
                                 for i in range(3000))
report = asyncio.run(validate_object(BytesObject(data), "k", len(data), "t.csv", "", DatasetRules(), None))
assert report.ok and report.stats[1].null_count > 0 and report.stats[0].mean is not None, report
print("pandas" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.floats(min_value=-1e15, max_value=1e15, allow_nan=False), min_size=1, max_size=200),
                min_size=1, max_size=6),
       st.floats(min_value=-1e12, max_value=1e12, allow_nan=False))
@example(batches=[[0.0, 5e-324]], offset=0.0)  # a span of one subnormal: its width once underflowed to 0
def test_histogram_counts_are_exact_whatever_the_batches(batches: list[list[float]], offset: float) -> None:
    histogram = Histogram()
    everything = []
    for batch in batches:
        values = np.asarray(batch, dtype=np.float64) + offset
        histogram.add(values)
        everything.append(values)
    numbers = np.concatenate(everything)
    buckets = histogram.buckets()
    assert sum(b.count for b in buckets) == len(numbers) and len(buckets) <= 20
    assert buckets[0].lower == numbers.min() and buckets[-1].upper == numbers.max()
    for index, bucket in enumerate(buckets):
        last = index == len(buckets) - 1
        inside = (numbers >= bucket.lower) & ((numbers <= bucket.upper) if last else (numbers < bucket.upper))
        assert bucket.count == int(inside.sum())
    assert histogram.high - histogram.low < BINS and math.log2(histogram.width).is_integer()


def test_get_file_stats_and_quarry_stats(server_file: ServerHandle, tmp_path: Path) -> None:
    cli = Cli(server_file.address, new_namespace(), tmp_path / "cache")
    data = csv_bytes(table().slice(0, 4000))
    with cli.client() as client:
        client.create_dataset("st")
        client.write_file("st", "t.csv", data)
        answer = client.get_file_stats("st", "t.csv")
    by_name = {c.name: c for c in answer.columns}
    assert answer.row_count == 4000 and by_name["count"].HasField("mean") and len(by_name["count"].quantiles) == 9
    assert by_name["city"].distinct_exact and len(by_name["city"].top_values) == 10
    assert not by_name["city"].HasField("mean") and len(by_name["amount"].histogram) <= 20
    shown = cli.json("stats", "st", "t.csv")
    assert [c["name"] for c in shown["columns"]] == ["id", "amount", "count", "city", "flag", "code"]
    assert shown["columns"][2]["histogram"] and shown["columns"][3]["top_values"]
    table_view = cli.run("stats", "st@1", "t.csv")
    assert table_view.returncode == 0, table_view.stderr
    assert "MEDIAN" in table_view.stdout and "city-" in table_view.stdout


async def test_quantiles_above_the_every_value_limit_come_from_a_uniform_sample(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stats_module, "EVERY_VALUE_QUANTILES", 10_000)
    ordered = pa.table({"x": np.sort(np.random.default_rng(3).exponential(5.0, ROWS))})  # sorted: a biased sample shows
    stats, _ = await stats_of(parquet_bytes(ordered), "sorted.parquet")
    got = stats["x"]
    assert "uniform sample" in got.source and got.mean == pytest.approx(float(np.mean(ordered.column("x"))))
    values = ordered.column("x").to_numpy()
    for probability, value in got.quantiles:
        rank = np.searchsorted(values, value, side="right") / len(values)
        assert abs(rank - probability) <= 0.025, (probability, value, rank)
