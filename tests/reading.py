"""A published version to read back, per store kind: tables of every format, in folders, made by the SDK.

`published` (session-scoped, one per store kind) uploads a directory through `Client.upload_dir` to a real
server and worker, so version 1 of dataset "lib" holds exactly these files, and keeps the source tables to
compare every read with.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
import quarry

from tests.conftest import STORE_KINDS
from tests.sdk_support import provision
from tests.support import ServerHandle

PARQUET_ROWS = 100_000
PARQUET_GROUPS = 4


def parts_table(first_id: int, rows: int = PARQUET_ROWS) -> pa.Table:
    """Sorted ids (so row-group statistics prune), random doubles, a few labels."""
    rng = np.random.default_rng(first_id)
    return pa.table({"id": pa.array(np.arange(first_id, first_id + rows), pa.int64()),
                     "x": pa.array(rng.random(rows)),
                     "label": pa.array([f"l{i % 7}" for i in range(rows)])})


def parquet_bytes(table: pa.Table, groups: int = PARQUET_GROUPS) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=max(1, table.num_rows // groups))
    return buffer.getvalue()


def sales_table(rows: int = 2000) -> pa.Table:
    return pa.table({"id": pa.array(range(rows), pa.int64()),
                     "region": pa.array([("north", "south", "east", "west")[i % 4] for i in range(rows)]),
                     "amount": pa.array([i * 1.25 for i in range(rows)])})


def events_table(rows: int = 500) -> pa.Table:
    return pa.table({"event": pa.array([f"e{i}" for i in range(rows)]), "value": pa.array(range(rows), pa.int64()),
                     "ok": pa.array([i % 2 == 0 for i in range(rows)])})


def write_tree(root: Path) -> dict[str, pa.Table]:
    """The files of version 1 under `root`; the tables of its tabular files, by path."""
    tables = {"sales.csv": sales_table(), "events/e1.jsonl": events_table(),
              "parts/p1.parquet": parts_table(0), "parts/p2.parquet": parts_table(PARQUET_ROWS)}
    (root / "events").mkdir(parents=True)
    (root / "parts").mkdir()
    pa_csv.write_csv(tables["sales.csv"], root / "sales.csv")
    (root / "events/e1.jsonl").write_text("".join(json.dumps(row) + "\n" for row in tables["events/e1.jsonl"]
                                                  .to_pylist()))
    for name in ("parts/p1.parquet", "parts/p2.parquet"):
        (root / name).write_bytes(parquet_bytes(tables[name]))
    (root / "parts/p1.parquet.md5").write_text("not a checksum, a text file whose path extends another's\n")
    (root / "notes.txt").write_text("read me\n" * 40)
    (root / "blob.bin").write_bytes(bytes(range(256)) * 1000)
    return tables


@dataclass
class Published:
    """Version 1 of dataset "lib" in a namespace of its own, and its source files and tables."""

    kind: str
    server: ServerHandle
    namespace: str
    root: Path
    tables: dict[str, pa.Table]
    version: str = ""  # version 1's canonical name (by uid; "…/versions/1" is an alias of it)
    paths: list[str] = field(default_factory=list)
    token: str = ""  # an admin's of the namespace

    def client(self, cache: Path | None = None, **options: object) -> quarry.Client:
        return quarry.Client(self.server.address, namespace=self.namespace, token=self.token,
                             cache_dir=cache or self.root.parent / "cache", **options)  # type: ignore[arg-type]

    def source(self, path: str) -> bytes:
        return (self.root / path).read_bytes()


@pytest.fixture(scope="session", params=STORE_KINDS)
def published(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Published]:
    kind: str = request.param
    server: ServerHandle = request.getfixturevalue(f"server_{kind}")
    request.getfixturevalue(f"worker_{kind}")
    base = tmp_path_factory.mktemp(f"published-{kind}")
    root = base / "lib"
    tables = write_tree(root)
    namespace, token = provision(server.address)
    done = Published(kind, server, namespace, root, tables, "",
                     sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()), token)
    with done.client() as client:
        result = client.upload_dir(root, "lib", message="v1", wait=True, wait_timeout=120)
    assert result.version.number == 1
    assert result.version.name == f"namespaces/{namespace}/datasets/lib/versions/{result.version.uid}"
    done.version = result.version.name
    yield done
