"""Whole-version downloads (both stores): every file, ranges in parallel, verified, resumable after a broken
connection, files already in place skipped; the SDK (sync and async) and `quarry download NAME@V -o DIR`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import quarry

from tests.reading import Published
from tests.sdk_support import BreakingProxy, Cli, assert_one_line_error

SMALL_PIECES = 256 << 10  # the Parquet files (1.5 MB) come in several ranges


@pytest.fixture(autouse=True)
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("quarry._version_download.PIECE_BYTES", SMALL_PIECES)


def same_tree(directory: Path, published: Published, paths: list[str]) -> None:
    got = sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())
    assert got == sorted(paths)
    for path in paths:
        assert (directory / path).read_bytes() == published.source(path), path


def test_a_version_downloads_whole_then_skips_what_is_there(published: Published, tmp_path: Path) -> None:
    out = tmp_path / "lib"
    seen: list[tuple[int, int]] = []
    total = sum(len(published.source(p)) for p in published.paths)
    with published.client() as client:
        result = client.download_version("lib", out, version=1, progress=lambda d, t: seen.append((d, t)))
        same_tree(out, published, published.paths)
        assert sorted(result.files) == published.paths and result.skipped == []
        assert result.bytes_received == total and result.version == published.version
        assert seen[0] == (0, total) and seen[-1] == (total, total)
        again = client.download_version("lib", out)
        assert again.files == [] and sorted(again.skipped) == published.paths and again.bytes_received == 0
        # A file damaged on disk is fetched again, and only that one.
        (out / "sales.csv").write_bytes(b"id\n")
        repaired = client.download_version("lib", out)
        assert repaired.files == ["sales.csv"] and repaired.bytes_received == len(published.source("sales.csv"))
        same_tree(out, published, published.paths)


def test_include_and_exclude_choose_paths(published: Published, tmp_path: Path) -> None:
    with published.client() as client:
        parquet = client.download_version("lib", tmp_path / "a", include=["parts/*"], exclude=["*.md5"])
        assert sorted(parquet.files) == ["parts/p1.parquet", "parts/p2.parquet"]
        same_tree(tmp_path / "a", published, ["parts/p1.parquet", "parts/p2.parquet"])
        with pytest.raises(quarry.NotFound):
            client.download_version("lib", tmp_path / "b", version=7)
        assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())


@pytest.mark.parametrize("published", ["file"], indirect=True)  # the cut is in the connection, not the store
def test_interrupted_download_resumes_from_durable_pieces(published: Published, tmp_path: Path) -> None:
    out = tmp_path / "lib"
    proxy = BreakingProxy(published.server.address, budget=1 << 20, downstream=True)
    try:
        with quarry.Client(proxy.address, namespace=published.namespace, token=published.token,
                           retry=quarry.RetryPolicy.never(),
                           cache_dir=tmp_path / "cache") as broken:
            with pytest.raises(quarry.Unavailable):
                broken.download_version("lib", out, include=["parts/*.parquet"], parallel=1)
    finally:
        proxy.close()
    records = [json.loads(p.read_text()) for p in out.rglob("*.partial.json")]
    assert records and any(r["done"] for r in records)  # some pieces were durable before the cut
    with published.client() as client:
        result = client.download_version("lib", out, include=["parts/*.parquet"])
    assert result.bytes_resumed > 0
    assert result.bytes_received + result.bytes_resumed == sum(len(published.source(p)) for p in result.files)
    same_tree(out, published, ["parts/p1.parquet", "parts/p2.parquet"])
    assert not list(out.rglob("*.partial*"))


def test_a_damaged_durable_piece_fails_the_check_and_is_removed(published: Published, tmp_path: Path) -> None:
    out = tmp_path / "lib"
    with published.client() as client:
        client.download_version("lib", out, include=["parts/p1.parquet"])
    # Pretend an earlier run left every piece durable, then one byte went bad on disk.
    target = out / "parts/p1.parquet"
    partial = target.with_name("p1.parquet.partial")
    data = bytearray(target.read_bytes())
    data[1000] ^= 0xFF
    partial.write_bytes(bytes(data))
    target.unlink()
    pieces = -(-len(data) // SMALL_PIECES)
    source = {"version": published.version, "path": "parts/p1.parquet",
              "sha256": hashlib.sha256(published.source("parts/p1.parquet")).hexdigest(), "size": len(data)}
    target.with_name("p1.parquet.partial.json").write_text(json.dumps({"source": source,
                                                                       "done": list(range(pieces))}))
    with published.client() as client:
        with pytest.raises(quarry.IntegrityError, match="sha256"):
            client.download_version("lib", out, version=1, include=["parts/p1.parquet"])
        assert not partial.exists() and not target.exists()
        again = client.download_version("lib", out, version=1, include=["parts/p1.parquet"])
    assert again.files == ["parts/p1.parquet"] and target.read_bytes() == published.source("parts/p1.parquet")


async def test_async_client_downloads_a_version(published: Published, tmp_path: Path) -> None:
    async with quarry.AsyncClient(published.server.address, namespace=published.namespace, token=published.token,
                                  cache_dir=tmp_path / "cache") as client:
        result = await client.download_version("lib", tmp_path / "lib", version="latest", parallel=3)
    assert sorted(result.files) == published.paths
    same_tree(tmp_path / "lib", published, published.paths)


def test_cli_downloads_a_version(published: Published, tmp_path: Path) -> None:
    cli = Cli(published.server.address, published.namespace, tmp_path / "cache")
    out = tmp_path / "copy"
    result = cli.json("download", "lib@1", "-o", str(out), "--exclude", "*.bin")
    assert sorted(result["files"]) == [p for p in published.paths if not p.endswith(".bin")]
    again = cli.run("download", "lib@1", "-o", str(out), "--exclude", "*.bin")
    assert again.returncode == 0 and "0 B fetched, 6 already there" in again.stdout, again.stdout
    here = tmp_path / "here"
    here.mkdir()
    assert cli.run("download", "lib", "--include", "events/*", cwd=here).returncode == 0
    assert (here / "lib/events/e1.jsonl").read_bytes() == published.source("events/e1.jsonl")
    assert_one_line_error(cli.run("download", "lib", "sales.csv", "--include", "x"), 2)
    assert_one_line_error(cli.run("download", "lib@9", "-o", str(out)), 1, "NOT_FOUND")
