"""Downloads through the SDK against the real server and worker, with real faults: a TCP proxy that cuts
the connection mid-stream, a retry policy that gives up at the first break (leaving a partial file), a
partial file damaged on disk, a version that moved on, and a file-size limit that makes the file system
take only part of a write.

Every test runs twice: on one stream, and in parallel ranges (small ones here, so a 6 MiB file is split the
way a large file is).

Reads without faults (diff, preview, stats, ReadFile) run in tests/test_sdk_datasets.py and tests/test_cli.py.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import resource
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import quarry

from tests.sdk_support import BreakingProxy, Cli, assert_one_line_error, provision, write_random_file
from tests.support import QuarryProcess, ServerHandle, metric_total, wait_metric

MiB = 1 << 20
SIZE = 6 * MiB + 777  # ReadFile sends 1 MiB messages: the last one is 777 bytes


RANGE = 256 << 10


@pytest.fixture(autouse=True, params=["one stream", "ranges", "ranges, page cache"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """How downloads fetch: one ReadFile stream, or RANGE-byte ranges four at once, written past the page
    cache (O_DIRECT, where this file system has it) or through it."""
    if request.param.startswith("ranges"):
        monkeypatch.setattr("quarry._download.RANGE_BYTES", RANGE)
        monkeypatch.setattr("quarry._download.RANGES_FROM", 2 * RANGE)
        if request.param.endswith("page cache"):
            monkeypatch.setattr("quarry._range_writer.DIRECT", 0)
    else:
        monkeypatch.setattr("quarry._download.RANGES_FROM", 1 << 62)
    return str(request.param)


@dataclass
class Published:
    """A READY version 1 of dataset "blobs" (big.bin, empty.bin) in a namespace of the test's own."""

    server: ServerHandle
    namespace: str
    source: Path
    sha256: str
    cache: Path
    token: str

    def client(self, address: str | None = None, **options: object) -> quarry.Client:
        return quarry.Client(address or self.server.address, namespace=self.namespace, token=self.token,
                             cache_dir=self.cache, **options)  # type: ignore[arg-type]


@pytest.fixture
def published(server_file: ServerHandle, worker_file: QuarryProcess, tmp_path: Path) -> Published:
    folder = tmp_path / "files"
    folder.mkdir()
    sha = write_random_file(folder / "big.bin", SIZE)
    (folder / "empty.bin").write_bytes(b"")
    namespace, token = provision(server_file.address)
    done = Published(server_file, namespace, folder / "big.bin", sha, tmp_path / "cache", token)
    with done.client() as client:
        client.upload_dir(folder, "blobs", wait=True, wait_timeout=60)
    return done


def break_once(published: Published, out: Path, version: int | str = 1) -> int:
    """Start a download through a proxy that cuts it after 3 MiB, with retries off: it fails and leaves a
    partial file. Returns the partial file's size."""
    proxy = BreakingProxy(published.server.address, budget=3 * MiB, downstream=True)
    try:
        with published.client(proxy.address, retry=quarry.RetryPolicy.never()) as client:
            with pytest.raises(quarry.Unavailable):
                client.download("blobs", "big.bin", out, version=version)
    finally:
        proxy.close()
    assert proxy.cuts == 1 and not out.exists()
    kept = out.with_name(out.name + ".partial").stat().st_size
    assert 0 < kept < SIZE
    return kept


async def test_a_large_file_comes_in_parallel_ranges(published: Published, tmp_path: Path, mode: str) -> None:
    port = published.server.metrics_port
    reads = 'quarry_grpc_handled_total{code="OK",method="/quarry.v1.DatasetService/ReadFile"}'

    async def calls_of(download: Callable[[], object], expected: int) -> float:
        """How many ReadFile calls `download` made: each is counted as its handler ends, maybe after the client
        has every byte, so the expected count is waited for, then compared (more would be there by then too:
        every call of a download ends before it returns)."""
        before = await asyncio.to_thread(metric_total, port, reads)
        await asyncio.to_thread(download)
        await wait_metric(port, reads, before + expected)
        return await asyncio.to_thread(metric_total, port, reads) - before

    seen: list[int] = []
    expected = -(-SIZE // RANGE) if mode.startswith("ranges") else 1
    with published.client() as client:
        calls = await calls_of(lambda: client.download("blobs", "big.bin", tmp_path / "out.bin", version=1,
                                                       progress=lambda done, total: seen.append(done)), expected)
    assert (tmp_path / "out.bin").read_bytes() == published.source.read_bytes()
    assert seen == sorted(seen) and seen[-1] == SIZE
    assert calls == expected
    with published.client(streams=1) as client:  # one stream asked for: never split
        calls = await calls_of(lambda: client.download("blobs", "big.bin", tmp_path / "one.bin", version=1), 1)
    assert calls == 1 and (tmp_path / "one.bin").read_bytes() == published.source.read_bytes()


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_download_resumes_within_the_call_through_broken_connections(published: Published, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("quarry._download.WINDOW", 2 * MiB)  # several windows, each with its own deadline
    proxy = BreakingProxy(published.server.address, budget=5 * MiB // 2, breaks=2, downstream=True)
    out = tmp_path / "out.bin"
    seen: list[tuple[int, int]] = []
    try:
        with published.client(proxy.address) as client:
            result = client.download("blobs", "big.bin", out, version=1,
                                     progress=lambda done, total: seen.append((done, total)))
    finally:
        proxy.close()
    assert proxy.cuts == 2  # the stream was cut twice mid-download, and the call went on by itself
    assert out.read_bytes() == published.source.read_bytes()
    assert result.sha256 == published.sha256 and result.size == SIZE
    assert result.bytes_received == SIZE and result.bytes_resumed == 0  # no byte was written twice
    assert seen[-1] == (SIZE, SIZE) and [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert not list(tmp_path.glob("*.partial*"))


def test_interrupted_download_continues_from_the_partial_file(published: Published, tmp_path: Path) -> None:
    out = tmp_path / "big.bin"
    kept = break_once(published, out)
    with published.client() as client:
        result = client.download("blobs", "big.bin", out, version=1)
    assert out.read_bytes() == published.source.read_bytes()
    assert (result.bytes_resumed, result.bytes_received) == (kept, SIZE - kept)

    # A file that changed since (a new latest version: its sha256 differs) starts over instead of mixing
    # old and new bytes.
    latest = tmp_path / "latest.bin"
    break_once(published, latest, version="latest")
    changed = tmp_path / "changed" / "big.bin"
    changed.parent.mkdir()
    new_sha = write_random_file(changed, 300_000)
    with published.client() as client:
        client.upload_file(changed, "blobs", "big.bin", wait=True, wait_timeout=60)
        again = client.download("blobs", "big.bin", latest)
    assert latest.read_bytes() == changed.read_bytes() and again.sha256 == new_sha
    assert again.bytes_resumed == 0 and again.bytes_received == 300_000


async def test_damaged_partial_file_is_refused_and_not_kept(published: Published, tmp_path: Path) -> None:
    out = tmp_path / "big.bin"
    kept = break_once(published, out)
    partial = out.with_name("big.bin.partial")
    flip_byte(partial, kept // 2)  # a byte of the partial file goes bad on disk
    async with quarry.AsyncClient(published.server.address, namespace=published.namespace, token=published.token,
                                  cache_dir=published.cache) as client:
        with pytest.raises(quarry.IntegrityError, match="sha256"):
            await client.download("blobs", "big.bin", out, version=1)
        leftovers = [out, partial, out.with_name("big.bin.partial.json")]
        assert not any(path.exists() for path in leftovers)
        again = await client.download("blobs", "big.bin", out, version=1)
        assert again.bytes_resumed == 0 and out.read_bytes() == published.source.read_bytes()
        empty = await client.download("blobs", "empty.bin", tmp_path / "empty.bin")
        assert empty.size == 0 and empty.sha256 == hashlib.sha256(b"").hexdigest()
        assert (tmp_path / "empty.bin").read_bytes() == b""
        with pytest.raises(quarry.NotFound):
            await client.download("blobs", "missing.bin", tmp_path / "missing.bin")
    missing = [tmp_path / name for name in ("missing.bin", "missing.bin.partial", "missing.bin.partial.json")]
    assert not any(path.exists() for path in missing)


def test_short_write_fails_the_download_and_is_not_renamed(published: Published, tmp_path: Path) -> None:
    """The file system takes only part of the last write (a file-size limit, as a full disk or tmpfs can
    do): the download must fail, not rename a short file into place; run again, it finishes."""
    cli = Cli(published.server.address, published.namespace, published.cache)
    out = tmp_path / "out.bin"
    limit = SIZE - 100  # inside the last message: nothing is written after the short write
    # The limit is set by a small Python that then becomes the CLI (a preexec_fn would fork this threaded
    # process); Python ignores SIGXFSZ, so a write past the limit fails with EFBIG.
    limited = ("import os, resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]),) * 2); "
               "os.execv(sys.executable, [sys.executable, '-m', 'quarry.cli', *sys.argv[2:]])")
    failed = subprocess.run([sys.executable, "-c", limited, str(limit), "download", "blobs@1", "big.bin", "-o",
                             str(out)], env=cli.env(), text=True, capture_output=True, timeout=120)
    line = assert_one_line_error(failed, 2)
    assert "File too large" in line and not out.exists()
    assert out.with_name("out.bin.partial").stat().st_size == limit
    result = cli.json("download", "blobs@1", "big.bin", "-o", str(out))
    assert result["bytes_resumed"] == limit and result["sha256"] == published.sha256
    assert out.read_bytes() == published.source.read_bytes()


def test_a_write_the_file_system_cuts_short_fails_the_download_and_it_resumes(published: Published,
                                                                              tmp_path: Path) -> None:
    """The same fault in this process, so that each way of writing meets it (the CLI above only writes one
    stream): the download fails with the file system's error, leaves a partial file of exactly what was
    written, and the next call continues from there."""
    out = tmp_path / "out.bin"
    limit = SIZE - 100
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    with published.client() as client:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))  # Python ignores SIGXFSZ: EFBIG instead
        try:
            with pytest.raises(OSError) as failed:
                client.download("blobs", "big.bin", out, version=1)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        assert failed.value.errno == errno.EFBIG and not out.exists()
        assert out.with_name("out.bin.partial").stat().st_size == limit
        result = client.download("blobs", "big.bin", out, version=1)
    assert result.bytes_resumed == limit and result.bytes_received == SIZE - limit
    assert out.read_bytes() == published.source.read_bytes()
