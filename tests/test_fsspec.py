"""The `quarry://` fsspec file system (both stores): found through its entry point, browsed, read by range, and
read by pandas, polars and DuckDB, each compared with the source files."""

from __future__ import annotations

import io

import duckdb
import fsspec
import pandas as pd
import polars as pl
import pyarrow.parquet as pq
import pytest
from quarry.fsspec import QuarryFileSystem

from tests.reading import Published


@pytest.fixture
def fs(published: Published) -> QuarryFileSystem:
    return fsspec.filesystem("quarry", address=published.server.address,  # type: ignore[no-any-return]
                             token=published.token)


def url(published: Published, path: str, version: str = "@1") -> str:
    return f"quarry://{published.namespace}/lib{version}/{path}"


def test_the_protocol_is_registered_by_the_entry_point() -> None:
    assert fsspec.get_filesystem_class("quarry") is QuarryFileSystem


def test_ls_info_find_and_glob(fs: QuarryFileSystem, published: Published) -> None:
    ns = published.namespace
    assert fs.ls(ns, detail=False) == [f"{ns}/lib"]
    assert fs.ls(f"quarry://{ns}/lib@1", detail=False) == [
        f"{ns}/lib@1/blob.bin", f"{ns}/lib@1/events", f"{ns}/lib@1/notes.txt", f"{ns}/lib@1/parts",
        f"{ns}/lib@1/sales.csv"]
    parts = fs.ls(f"{ns}/lib/parts")  # no version: the current one
    assert [(e["name"], e["type"]) for e in parts] == [(f"{ns}/lib/parts/p1.parquet", "file"),
                                                      (f"{ns}/lib/parts/p1.parquet.md5", "file"),
                                                      (f"{ns}/lib/parts/p2.parquet", "file")]
    info = fs.info(url(published, "parts/p2.parquet"))
    assert info["size"] == len(published.source("parts/p2.parquet")) and info["type"] == "file"
    assert info["format"] == "PARQUET" and info["version"] == published.version and len(info["sha256"]) == 64
    assert fs.info(f"{ns}/lib@1/events")["type"] == "directory" and fs.isdir(f"{ns}/lib@1")
    assert fs.isfile(f"{ns}/lib@1/sales.csv") and not fs.isfile(f"{ns}/lib@1/parts")
    assert fs.find(f"{ns}/lib@1") == [f"{ns}/lib@1/{p}" for p in published.paths]
    assert fs.find(f"{ns}/lib@1", maxdepth=1) == [f"{ns}/lib@1/blob.bin", f"{ns}/lib@1/notes.txt",
                                                   f"{ns}/lib@1/sales.csv"]
    assert f"{ns}/lib@1/parts" in fs.find(f"{ns}/lib@1", withdirs=True)
    assert fs.glob(url(published, "parts/*.parquet")) == [f"{ns}/lib@1/parts/p1.parquet",
                                                          f"{ns}/lib@1/parts/p2.parquet"]
    assert fs.glob(f"{ns}/lib@1/**/*.jsonl") == [f"{ns}/lib@1/events/e1.jsonl"]
    for missing in (f"{ns}/lib@1/nope.csv", f"{ns}/lib@9/sales.csv", f"{ns}/nolib/x", f"{ns}/lib@1/parts/p"):
        with pytest.raises(FileNotFoundError):
            fs.info(missing)
        assert not fs.exists(missing)


def test_open_and_cat_file_read_by_range(fs: QuarryFileSystem, published: Published) -> None:
    source = published.source("blob.bin")
    with fs.open(url(published, "blob.bin")) as file:
        file.seek(1000)
        assert file.read(24) == source[1000:1024]
    assert fs.cat_file(url(published, "blob.bin"), start=10, end=20) == source[10:20]
    assert fs.cat_file(url(published, "blob.bin"), start=-5) == source[-5:]
    assert fs.cat_file(url(published, "blob.bin"), start=255_990, end=300_000) == source[255_990:]
    assert fs.cat(url(published, "notes.txt")) == published.source("notes.txt")
    with pytest.raises(PermissionError):
        fs.open(url(published, "new.csv"), "wb")
    with pytest.raises(PermissionError):
        fs.rm(url(published, "sales.csv"))
    with pytest.raises(FileNotFoundError):
        fs.open(url(published, "missing.bin"))


def test_pandas_reads_parquet_and_csv(published: Published) -> None:
    options = {"address": published.server.address, "token": published.token}
    frame = pd.read_parquet(url(published, "parts/p1.parquet"), columns=["id", "label"], storage_options=options)
    assert frame.equals(published.tables["parts/p1.parquet"].select(["id", "label"]).to_pandas())
    csv = pd.read_csv(url(published, "sales.csv", version=""), storage_options=options)
    assert csv.equals(published.tables["sales.csv"].to_pandas())
    lines = pd.read_json(url(published, "events/e1.jsonl"), lines=True, storage_options=options)
    assert lines["value"].tolist() == published.tables["events/e1.jsonl"]["value"].to_pylist()


def test_polars_reads_parquet_and_csv(published: Published) -> None:
    options = {"address": published.server.address, "token": published.token}
    # polars hands URLs of protocols it does not know itself to fsspec when it reads through pyarrow.
    frame = pl.read_parquet(url(published, "parts/p2.parquet"), columns=["id", "x"], storage_options=options,
                            use_pyarrow=True)
    assert frame.to_arrow().equals(published.tables["parts/p2.parquet"].select(["id", "x"]))
    # Other formats, from an fsspec file (polars' own readers know only local and cloud paths).
    with fsspec.open(url(published, "sales.csv"), **options) as file:
        csv = pl.read_csv(file)
    assert csv.to_arrow().cast(published.tables["sales.csv"].schema).equals(published.tables["sales.csv"])


def test_duckdb_queries_versions(published: Published) -> None:
    connection = duckdb.connect()
    connection.register_filesystem(fsspec.filesystem("quarry", address=published.server.address,
                                                     token=published.token))
    total = connection.sql(f"SELECT count(*), sum(id) FROM read_parquet('{url(published, 'parts/*.parquet')}')")
    rows = 2 * published.tables["parts/p1.parquet"].num_rows
    assert total.fetchall() == [(rows, rows * (rows - 1) // 2)]
    by_region = connection.sql(f"SELECT region, count(*) AS n FROM read_csv('{url(published, 'sales.csv')}') "
                               "GROUP BY region ORDER BY region").fetchall()
    assert by_region == [("east", 500), ("north", 500), ("south", 500), ("west", 500)]
    table = connection.sql(f"SELECT * FROM read_parquet('{url(published, 'parts/p1.parquet')}')").to_arrow_table()
    assert table.equals(published.tables["parts/p1.parquet"])


def test_pyarrow_through_fsspec(fs: QuarryFileSystem, published: Published) -> None:
    with fs.open(url(published, "parts/p1.parquet")) as file:
        assert pq.read_table(file, columns=["x"]).equals(published.tables["parts/p1.parquet"].select(["x"]))
    raw = io.BytesIO(fs.cat(url(published, "parts/p2.parquet")))
    assert pq.read_table(raw).equals(published.tables["parts/p2.parquet"])
