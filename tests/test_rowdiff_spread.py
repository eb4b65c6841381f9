"""The row diff's spill and join (`server.domain.rowdiff.Spread`) on its own: any number of partitions gives the same
answer as one, which is the plain comparison's; NaN, nulls and all-null columns; duplicate keys across batches."""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path

import pyarrow as pa
import pytest

from server.domain.rowdiff import RowDiff, Spread, Stopped
from server.model.errors import FailedPrecondition


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
