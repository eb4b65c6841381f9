"""Test files of every format, made in memory."""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq


@dataclass(frozen=True)
class Sample:
    """A file, where it goes, and what validation should find."""

    path: str
    data: bytes
    format: str
    rows: int
    columns: tuple[tuple[str, str], ...]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def csv_sample(rows: int = 1000, path: str = "data/table.csv", extra_column: bool = False) -> Sample:
    header = "id,name,score" + (",extra" if extra_column else "")
    lines = [header] + [f"{i},name-{i},{i * 0.5}" + (f",{i}" if extra_column else "") for i in range(rows)]
    columns = [("id", "int64"), ("name", "string"), ("score", "double")] + ([("extra", "int64")] if extra_column
                                                                           else [])
    return Sample(path, ("\n".join(lines) + "\n").encode(), "CSV", rows, tuple(columns))


def jsonl_sample(rows: int = 500, path: str = "events.jsonl") -> Sample:
    lines = [json.dumps({"event": f"e{i}", "value": i, "ok": i % 2 == 0}) for i in range(rows)]
    return Sample(path, ("\n".join(lines) + "\n").encode(), "JSONL", rows,
                  (("event", "string"), ("value", "int64"), ("ok", "bool")))


def parquet_sample(rows: int = 5000, path: str = "table.parquet") -> Sample:
    table = pa.table({"k": pa.array(range(rows), pa.int64()), "v": pa.array([f"v{i % 97}" for i in range(rows)])})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=1000)
    return Sample(path, buffer.getvalue(), "PARQUET", rows, (("k", "int64"), ("v", "string")))


def binary_sample(size: int = 100_000, path: str = "blob.bin") -> Sample:
    return Sample(path, os.urandom(size), "BINARY", 0, ())
