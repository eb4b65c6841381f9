"""The row diff's spill and join (`server.domain.rowdiff.Spread`) on its own: any number of partitions gives the same
answer as one, which is the plain comparison's; NaN, nulls and all-null columns; duplicate keys across batches."""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path

import pyarrow as pa
import pytest

from server.domain.rowdiff import RowDiff, Spread, Stopped, check_keys
from server.model.errors import FailedPrecondition, InvalidArgument


def table(ids: list[int], values: list[float | None], extra: bool = False) -> pa.Table:
    columns = {"id": pa.array(ids, pa.int64()), "v": pa.array(values, pa.float64()),
               "s": pa.array([f"s{i}" for i in ids]), "empty": pa.nulls(len(ids))}
    if extra:
        columns["x"] = pa.array([1] * len(ids), pa.int32())
    return pa.table(columns)


def compare(tmp_path: Path, base: pa.Table, target: pa.Table, partitions: int, sample: int = 5,
            batch_rows: int = 1000) -> RowDiff:
    spread = Spread(tmp_path / f"p{partitions}", ["id"], partitions, threading.Event())
    spread.directory.mkdir()
    spread.add("base", iter(base.to_batches(max_chunksize=batch_rows)), base.schema)
    spread.add("target", iter(target.to_batches(max_chunksize=batch_rows)), target.schema)
    return spread.compare(sample)


@pytest.mark.parametrize("partitions", [1, 7, 64])
def test_any_partition_count_gives_the_plain_answer(tmp_path: Path, partitions: int) -> None:
    shuffle = random.Random(1)
    base_ids, target_ids = list(range(0, 10_000)), list(range(5_000, 15_000))
    shuffle.shuffle(base_ids)
    shuffle.shuffle(target_ids)

    def value(i: int, version: int) -> float | None:
        if i % 97 == 0:
            return float("nan")  # NaN in both: equal
        if i % 89 == 0:
            return None if version == 1 else 1.0  # null, then a value: changed
        return i + (1.0 if version == 2 and i % 10 == 0 else 0.0)

    base = table(base_ids, [value(i, 1) for i in base_ids], extra=True)
    target = table(target_ids, [value(i, 2) for i in target_ids])
    diff = compare(tmp_path, base, target, partitions)
    changed = [i for i in target_ids if i < 10_000 and i % 97 and (i % 10 == 0 or i % 89 == 0)]
    assert (diff.added, diff.removed, diff.changed, diff.unchanged) == (5_000, 5_000, len(changed),
                                                                        5_000 - len(changed))
    assert diff.compared_columns == ("v", "s", "empty")  # x is the base's only
    assert [json.loads(r)["id"] for r in diff.added_rows] == [i for i in target_ids if i >= 10_000][:5]
    assert [json.loads(r)["id"] for r in diff.removed_rows] == [i for i in base_ids if i < 5_000][:5]
    assert [json.loads(c.target_row)["id"] for c in diff.changed_rows] == changed[:5]
    assert all(c.columns == ("v",) for c in diff.changed_rows)
    assert all("x" in json.loads(c.base_row) and "x" not in json.loads(c.target_row) for c in diff.changed_rows)
    assert len(list((tmp_path / f"p{partitions}").glob("*.arrow"))) == 2 * partitions  # each side, spread


def test_an_empty_side(tmp_path: Path) -> None:
    base = table(list(range(10)), [1.0] * 10)
    diff = compare(tmp_path, base, base.slice(0, 0), 3, sample=3)
    assert (diff.added, diff.removed, diff.changed, diff.unchanged, len(diff.removed_rows)) == (0, 10, 0, 0, 3)


def test_a_key_repeated_in_another_batch_is_refused(tmp_path: Path) -> None:
    twice = table([1, 2, 3, 2], [0.0, 1.0, 2.0, 3.0])
    with pytest.raises(FailedPrecondition) as refused:
        compare(tmp_path, twice, table([1], [0.0]), 4, batch_rows=2)  # the two 2s come in different batches
    assert refused.value.reason == "DUPLICATE_KEY" and refused.value.metadata == {"file": "base", "key": '{"id": 2}'}


def test_a_null_key_is_refused_and_a_stop_is_heard(tmp_path: Path) -> None:
    spread = Spread(tmp_path, ["id"], 2, threading.Event())
    holes = pa.table({"id": pa.array([1, None], pa.int64())})
    with pytest.raises(FailedPrecondition) as refused:
        spread.add("target", iter(holes.to_batches()), holes.schema)
    assert refused.value.reason == "NULL_KEY" and refused.value.metadata == {"file": "target", "column": "id"}
    spread.stop.set()
    with pytest.raises(Stopped):
        spread.add("base", iter(table([1], [1.0]).to_batches()), holes.schema)


def test_a_file_may_name_its_columns_as_the_spill_does(tmp_path: Path) -> None:
    # The spill and the join use generated names (k0, b0, t0, brow, trow): a file's own never meet them, nor did
    # the names they replaced (a row-number column "__quarry_row", prefixes "b:" and "t:").
    names = ["trow", "k0", "b1", "t0", "__quarry_row", "b:k0"]
    base = pa.table({name: pa.array([1, 2, 3], pa.int64()) for name in names})
    target = pa.table({name: pa.array([2, 9, 4] if name == "k0" else [2, 3, 4], pa.int64()) for name in names})
    spread = Spread(tmp_path, ["trow"], 2, threading.Event())
    spread.add("base", iter(base.to_batches()), base.schema)
    spread.add("target", iter(target.to_batches()), target.schema)
    diff = spread.compare(5)
    assert (diff.added, diff.removed, diff.changed, diff.unchanged) == (1, 1, 1, 1)
    assert diff.compared_columns == ("k0", "b1", "t0", "__quarry_row", "b:k0")
    [change] = diff.changed_rows
    assert json.loads(change.base_row) == dict.fromkeys(names, 3) and change.columns == ("k0",)
    assert [json.loads(r) for r in diff.added_rows] == [dict.fromkeys(names, 4)]


def test_a_key_must_name_one_column_of_one_plain_type() -> None:
    plain = pa.schema([("id", pa.int64()), ("v", pa.string())])
    twice = pa.schema([("id", pa.int64()), ("id", pa.int64())])
    nested = pa.schema([("id", pa.list_(pa.int64()))])
    for keys, base, target, reason in ((["id"], twice, plain, "INVALID_ARGUMENT"),
                                       (["id"], nested, nested, "INVALID_ARGUMENT"),
                                       (["w"], plain, plain, "COLUMN_NOT_FOUND")):
        with pytest.raises(InvalidArgument) as refused:
            check_keys(keys, base, target)
        assert (refused.value.reason, [v.field for v in refused.value.violations]) == (reason, ["key_columns"]), keys
    check_keys(["id", "v"], plain, plain)
