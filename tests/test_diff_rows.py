"""DiffRows: the rows of one tabular file in two versions, matched by key columns (both stores, CSV, JSON Lines and
Parquet), against the same comparison done here in plain Python; and every refusal, leaving no spill behind."""

from __future__ import annotations

import glob
import io
import json
import os
import random
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import quarry
from quarry.v1 import dataset_service_pb2 as dpb

from server.domain.rowdiff import DEFAULT_SAMPLE_ROWS
from tests.conftest import STORE_KINDS
from tests.samples import Sample
from tests.sdk_support import Cli, assert_one_line_error
from tests.support import Api, ServerHandle, error_info, field_violations, open_api
from tests.test_files import RssSampler, commit, dataset_on, failure, proc_status, text_sample
from tests.uploading import MiB

Row = dict[str, Any]
BASE_IDS = list(range(0, 1000))
TARGET_IDS = list(range(100, 1100))  # 0-99 removed, 1000-1099 added


def people(ids: list[int], version: int) -> list[Row]:
    """Rows in a shuffled (seeded) order: samples are the first in file order, not in key order. In version 2,
    every 50th score moves and every 70th name changes; `level` is text in version 2 (retyped: not compared)."""
    rows = []
    for i in ids:
        score = i * 0.5 + (1 if version == 2 and i % 50 == 0 else 0)
        name = f"n{i}" + ("!" if version == 2 and i % 70 == 0 else "")
        rows.append({"id": i, "name": name, "score": score, "level": i % 3 if version == 1 else f"L{i % 3}"})
    random.Random(version).shuffle(rows)
    return rows


def csv_of(path: str, rows: list[Row]) -> Sample:
    lines = [",".join(rows[0])] + [",".join(str(v) for v in row.values()) for row in rows]
    return Sample(path, ("\n".join(lines) + "\n").encode(), "CSV", len(rows), ())


def jsonl_of(path: str, rows: list[Row]) -> Sample:
    return Sample(path, "".join(json.dumps(row) + "\n" for row in rows).encode(), "JSONL", len(rows), ())


def parquet_of(path: str, rows: list[Row]) -> Sample:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer, row_group_size=300)
    return Sample(path, buffer.getvalue(), "PARQUET", len(rows), ())


def expected(base: list[Row], target: list[Row], keys: list[str], compared: list[str]) -> dict[str, Any]:
    """The comparison, done naively."""
    def key(row: Row) -> tuple[Any, ...]:
        return tuple(row[k] for k in keys)

    old = {key(r): r for r in base}
    new = {key(r): r for r in target}
    changed = [r for r in target if key(r) in old and any(old[key(r)][c] != r[c] for c in compared)]
    return {"added": [r for r in target if key(r) not in old], "removed": [r for r in base if key(r) not in new],
            "changed": changed, "unchanged": sum(1 for k in new if k in old) - len(changed), "old": old}


@dataclass
class Rows:
    api: Api
    server: ServerHandle
    base: str
    target: str
    dataset: str


@pytest.fixture(scope="module", params=STORE_KINDS)
async def rows(request: pytest.FixtureRequest, stack_envs: dict[str, dict[str, str]]) -> AsyncIterator[Rows]:
    # Version 2 retypes a column (level): the dataset allows it, as it is what DiffRows must leave out.
    _, server, api = await dataset_on(request, "rows")
    first, second = people(BASE_IDS, 1), people(TARGET_IDS, 2)
    twice = [{"id": 1, "v": 1}, {"id": 2, "v": 2}, {"id": 1, "v": 3}]
    v1 = await commit(api, "rows", [
        csv_of("people.csv", first), jsonl_of("people.jsonl", first), parquet_of("people.parquet", first),
        csv_of("twice.csv", twice), csv_of("pairs.csv", [{"a": i // 10, "b": i % 10, "v": i} for i in range(100)]),
        Sample("holes.csv", b"id,v\n1,a\n,b\n3,c\n", "CSV", 3, ()), csv_of("typed.csv", [{"k": 1, "v": 1}]),
        parquet_of("nested.parquet", [{"k": [1, 2], "v": 1}, {"k": [3], "v": 2}]),
        text_sample("notes.txt")])
    v2 = await commit(api, "rows", [
        csv_of("people.csv", second), jsonl_of("people.jsonl", second), parquet_of("people.parquet", second),
        csv_of("pairs.csv", [{"a": i // 10, "b": i % 10, "v": i + (i % 7 == 0)} for i in range(5, 105)]),
        csv_of("typed.csv", [{"k": "one", "v": 1}])], base=v1.name)
    yield Rows(api, server, v1.name, v2.name, f"{api.parent}/datasets/rows")
    await api.channel.close()


def spills() -> list[str]:
    """What row diffs left in the temporary directory the servers use (they inherit this process's TMPDIR)."""
    return glob.glob(os.path.join(tempfile.gettempdir(), "quarry-rowdiff-*"))


@pytest.mark.parametrize("path", ["people.csv", "people.jsonl", "people.parquet"])
async def test_rows_added_removed_and_changed_match_a_plain_comparison(rows: Rows, path: str) -> None:
    base, target = people(BASE_IDS, 1), people(TARGET_IDS, 2)
    want = expected(base, target, ["id"], ["name", "score"])
    diff = await rows.api.datasets.DiffRows(dpb.DiffRowsRequest(base_version=rows.base, target_version=rows.target,
                                                                path=path, key_columns=["id"]))
    assert (diff.added_count, diff.removed_count, diff.changed_count, diff.unchanged_count) == \
        (100, 100, len(want["changed"]), want["unchanged"])
    assert len(want["changed"]) == 18 + 13 - 2  # every 50th and every 70th of 100-999; 350 and 700 are both
    assert list(diff.compared_columns) == ["name", "score"]  # level is retyped: left out
    n = DEFAULT_SAMPLE_ROWS
    assert [json.loads(r) for r in diff.added_rows] == want["added"][:n]  # whole target rows, file order
    assert [json.loads(r) for r in diff.removed_rows] == want["removed"][:n]
    assert [json.loads(c.target_row) for c in diff.changed_rows] == want["changed"][:n]
    for change in diff.changed_rows:
        old, new = json.loads(change.base_row), json.loads(change.target_row)
        assert old == want["old"][(new["id"],)] and isinstance(old["level"], int) and isinstance(new["level"], str)
        assert list(change.changed_columns) == [c for c in ("name", "score") if old[c] != new[c]]
    assert spills() == []


async def test_a_composite_key_and_the_sample_size(rows: Rows) -> None:
    base = [{"a": i // 10, "b": i % 10, "v": i} for i in range(100)]
    target = [{"a": i // 10, "b": i % 10, "v": i + (i % 7 == 0)} for i in range(5, 105)]
    want = expected(base, target, ["a", "b"], ["v"])
    for asked, shown in ((3, 3), (1000, 100)):
        diff = await rows.api.datasets.DiffRows(dpb.DiffRowsRequest(
            base_version=rows.base, target_version=rows.target, path="pairs.csv", key_columns=["a", "b"],
            sample_rows=asked))
        assert (diff.added_count, diff.removed_count, diff.changed_count, diff.unchanged_count) == \
            (5, 5, len(want["changed"]), want["unchanged"])
        assert [json.loads(c.target_row) for c in diff.changed_rows] == want["changed"][:shown]
        assert [json.loads(r) for r in diff.removed_rows] == want["removed"][:shown]
    same = await rows.api.datasets.DiffRows(dpb.DiffRowsRequest(base_version=rows.base, target_version=rows.base,
                                                                path="pairs.csv", key_columns=["a", "b"]))
    assert (same.added_count, same.removed_count, same.changed_count, same.unchanged_count) == (0, 0, 0, 100)


async def test_the_sdk_compares_rows(rows: Rows, tmp_path: Path) -> None:
    namespace = rows.api.namespace
    with quarry.Client(rows.server.address, namespace=namespace, token=rows.api.token, cache_dir=tmp_path) as client:
        diff = client.diff_rows("rows", "people.parquet", 1, keys=["id"], sample_rows=2)
    assert (diff.added_count, diff.removed_count, len(diff.added_rows)) == (100, 100, 2)
    async with quarry.AsyncClient(rows.server.address, namespace=namespace, token=rows.api.token,
                                  cache_dir=tmp_path) as async_client:
        assert await async_client.diff_rows("rows", "people.parquet", 1, 2, keys=["id"], sample_rows=2) == diff


def test_the_cli_compares_rows(rows: Rows, tmp_path: Path) -> None:
    cli = Cli(rows.server.address, rows.api.namespace, tmp_path, token=rows.api.token)
    answer = cli.json("diff", "rows@1", "rows@2", "--rows", "people.csv", "--key", "id")
    assert (int(answer["added_count"]), int(answer["removed_count"]), answer["compared_columns"]) == \
        (100, 100, ["name", "score"])
    shown = cli.run("diff", "rows@1", "--rows", "pairs.csv", "--key", "a", "--key", "b")
    assert shown.returncode == 0 and "5 added, 5 removed" in shown.stderr + shown.stdout, shown
    assert_one_line_error(cli.run("diff", "rows@1", "--rows", "people.csv"), 2)  # no --key
    twice = assert_one_line_error(cli.run("diff", "rows@1", "rows@1", "--rows", "twice.csv", "--key", "id"), 1,
                                  "FAILED_PRECONDITION")
    assert 'key {"id": 1} names 2 rows of the base file' in twice


async def test_bad_requests_are_refused_with_their_reason(rows: Rows) -> None:
    async def refused(**fields: Any) -> tuple[grpc.StatusCode, str, list[str], dict[str, str]]:
        request = dpb.DiffRowsRequest(base_version=rows.base, target_version=rows.target, path="people.csv",
                                      key_columns=["id"])
        for name, value in fields.items():
            if isinstance(value, list):
                del getattr(request, name)[:]
                getattr(request, name).extend(value)
            else:
                setattr(request, name, value)
        error = await failure(rows.api.datasets.DiffRows(request))
        reason, metadata = error_info(error)
        return error.code(), reason, field_violations(error), metadata

    invalid = grpc.StatusCode.INVALID_ARGUMENT
    precondition = grpc.StatusCode.FAILED_PRECONDITION
    assert (await refused(key_columns=[]))[:3] == (invalid, "INVALID_ARGUMENT", ["key_columns"])
    assert (await refused(key_columns=["id", "id"]))[:3] == (invalid, "INVALID_ARGUMENT", ["key_columns"])
    assert (await refused(key_columns=["nope"]))[:3] == (invalid, "COLUMN_NOT_FOUND", ["key_columns"])
    assert (await refused(path="nested.parquet", key_columns=["k"], target_version=rows.base))[:3] == \
        (invalid, "INVALID_ARGUMENT", ["key_columns"])  # a list is no key
    assert (await refused(sample_rows=-1))[:3] == (invalid, "INVALID_ROW_LIMIT", ["sample_rows"])
    assert (await refused(path="../x"))[:3] == (invalid, "INVALID_PATH", ["path"])
    assert (await refused(target_version=f"{rows.api.parent}/datasets/other/versions/1"))[:3] == \
        (invalid, "DIFFERENT_DATASETS", ["target_version"])
    assert (await refused(path="missing.csv"))[:2] == (grpc.StatusCode.NOT_FOUND, "FILE_NOT_FOUND")
    assert (await refused(target_version=f"{rows.dataset}/versions/9"))[:2] == \
        (grpc.StatusCode.NOT_FOUND, "VERSION_NOT_FOUND")
    assert (await refused(path="notes.txt", target_version=rows.base))[:2] == (precondition, "NOT_TABULAR")
    assert (await refused(path="typed.csv", key_columns=["k"]))[:2] == (precondition, "SCHEMAS_DIFFER")
    code, reason, _, metadata = await refused(path="twice.csv", target_version=rows.base)
    assert (code, reason, metadata["file"], json.loads(metadata["key"])) == (precondition, "DUPLICATE_KEY", "base",
                                                                             {"id": 1})
    code, reason, _, metadata = await refused(path="holes.csv", target_version=rows.base)
    assert (code, reason, metadata) == (precondition, "NULL_KEY", {"file": "base", "column": "id"})
    elsewhere = "namespaces/someone-else/datasets/rows/versions/"
    assert (await refused(base_version=elsewhere + "1", target_version=elsewhere + "2"))[0] == \
        grpc.StatusCode.PERMISSION_DENIED
    assert spills() == []


BIG_ROWS = 10_000_000


def big_parquet(path: Path, first: int, changed_every: int) -> None:
    """BIG_ROWS rows with ids from `first`: id, v (2 * id, plus 1 on every `changed_every`-th id) and s (the id as
    text), about 150 MB of Parquet and 300 MB in memory."""
    ids = np.arange(first, first + BIG_ROWS, dtype=np.int64)
    values = ids * 2 + (ids % changed_every == 0 if changed_every else 0)
    pq.write_table(pa.table({"id": ids, "v": values, "s": pc.cast(pa.array(ids), pa.string())}), path,
                   row_group_size=1_000_000)


@pytest.mark.big  # a minute: `make test-big`
async def test_ten_million_rows_diff_in_bounded_memory(server_file: ServerHandle, worker_file: object,
                                                       tmp_path: Path) -> None:
    api = open_api(server_file.address)
    try:
        with quarry.Client(server_file.address, namespace=api.namespace, token=api.token,
                           cache_dir=tmp_path / "cache") as client:
            for first, every in ((0, 0), (1_000_000, 1000)):
                big_parquet(tmp_path / "t.parquet", first, every)
                client.upload_file(tmp_path / "t.parquet", "big", "t.parquet", wait=True, wait_timeout=600)
        pid = server_file.process.pid
        baseline = proc_status(pid, "VmRSS")
        started = time.monotonic()
        with RssSampler(pid) as rss:
            diff = await api.datasets.DiffRows(dpb.DiffRowsRequest(
                base_version=f"{api.parent}/datasets/big/versions/1", target_version=f"{api.parent}/datasets/big/"
                "versions/2", path="t.parquet", key_columns=["id"]), timeout=600)
        took = time.monotonic() - started
        assert (diff.added_count, diff.removed_count, diff.changed_count, diff.unchanged_count) == \
            (1_000_000, 1_000_000, 9_000, 9_000_000 - 9_000)
        assert [json.loads(r)["id"] for r in diff.added_rows] == list(range(10_000_000, 10_000_010))
        assert [json.loads(c.base_row)["v"] + 1 for c in diff.changed_rows] == \
            [json.loads(c.target_row)["v"] for c in diff.changed_rows]
        growth = rss.peak - baseline
        print(f"\nDiffRows of 2 x {BIG_ROWS:,} rows: {took:.1f} s, server RSS +{growth / MiB:.0f} MiB")
        # One file's rows in memory would be about 300 MB (both: 600): the spill keeps a partition pair at a time.
        assert growth < 200 * MiB, f"server RSS grew by {growth / MiB:.0f} MiB"
        assert spills() == []
    finally:
        await api.channel.close()
