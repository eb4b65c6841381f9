"""Downloads through the SDK against a stand-in DatasetService, for faults we cannot cause on demand in the
real server: a stream that breaks part-way, a read that fails for good, a file that changed, bytes that arrive
corrupted. The stand-in serves ReadFile (and PreviewFile) from memory, exactly as the contract describes them.

The same reads without faults run against the real server in tests/test_sdk_datasets.py and tests/test_cli.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pyarrow as pa
import pytest
import quarry
from quarry.v1 import dataset_service_pb2 as pb
from quarry.v1 import dataset_service_pb2_grpc as pb_grpc
from quarry.v1 import version_pb2


@dataclass
class Files(pb_grpc.DatasetServiceServicer):
    """ReadFile and PreviewFile over files held in memory, with injectable faults."""

    files: dict[tuple[str, str], bytes] = field(default_factory=dict)
    chunk: int = 64 * 1024
    break_after: list[int] = field(default_factory=list)  # per call, in order: fail UNAVAILABLE after n bytes
    fatal_after: int | None = None  # fail INTERNAL after n bytes (the client gives up)
    corrupt: bool = False
    calls: list[tuple[int, int]] = field(default_factory=list)

    def ReadFile(self, request: Any, context: Any) -> Iterator[pb.ReadFileResponse]:
        data = self.files.get((request.version, request.path))
        if data is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"{request.path} not found in {request.version}")
        if request.offset > len(data):
            context.abort(grpc.StatusCode.OUT_OF_RANGE, "offset past the end")
        self.calls.append((request.offset, request.limit))
        end = len(data) if not request.limit else min(len(data), request.offset + request.limit)
        budget = self.break_after.pop(0) if self.break_after else None
        sha = hashlib.sha256(data).hexdigest()
        for start in range(request.offset, end, self.chunk):
            piece = data[start:min(end, start + self.chunk)]
            if budget is not None and start - request.offset >= budget:
                context.abort(grpc.StatusCode.UNAVAILABLE, "connection lost")
            if self.fatal_after is not None and start >= self.fatal_after:
                context.abort(grpc.StatusCode.INTERNAL, "disk on fire")
            if self.corrupt:
                piece = bytes(b ^ 1 for b in piece)
            yield pb.ReadFileResponse(data=piece, offset=start, file_size_bytes=len(data), sha256=sha)

    def PreviewFile(self, request: Any, context: Any) -> pb.PreviewFileResponse:
        table = pa.table({"id": [1, 2, 3], "name": ["a", "b", None]}).slice(0, request.row_limit or 100)
        sink = io.BytesIO()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        rows = [json.dumps(row) for row in table.to_pylist()]
        return pb.PreviewFileResponse(arrow_ipc_stream=sink.getvalue(), json_rows=rows, row_count=table.num_rows,
                                      total_rows=3, columns=[version_pb2.Column(name="id", type="int64"),
                                                             version_pb2.Column(name="name", type="string")])


@pytest.fixture
def stand_in() -> Iterator[tuple[Files, str]]:
    files = Files()
    server = grpc.server(futures.ThreadPoolExecutor(4))
    pb_grpc.add_DatasetServiceServicer_to_server(files, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield files, f"127.0.0.1:{port}"
    server.stop(0)


V1 = "namespaces/ns/datasets/tab/versions/1"
LATEST = "namespaces/ns/datasets/tab/versions/latest"


def client(address: str, tmp_path: Path) -> quarry.Client:
    return quarry.Client(address, namespace="ns", cache_dir=tmp_path,
                         retry=quarry.RetryPolicy(initial_backoff=0.01))


def test_download_verifies_and_follows_broken_streams(stand_in: tuple[Files, str], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    files, address = stand_in
    data = os.urandom(3_000_000)
    files.files[(V1, "big.bin")] = data
    files.break_after = [8 * files.chunk, 11 * files.chunk]  # streams break after 8 and 11 chunks
    monkeypatch.setattr("quarry._download.WINDOW", 1_000_000)  # several windows, each with its own deadline
    seen: list[tuple[int, int]] = []
    with client(address, tmp_path) as c:
        result = c.download("tab", "big.bin", tmp_path / "out.bin", version=1,
                            progress=lambda done, total: seen.append((done, total)))
    assert (tmp_path / "out.bin").read_bytes() == data
    assert result.sha256 == hashlib.sha256(data).hexdigest() and result.bytes_received == len(data)
    assert seen[-1] == (len(data), len(data))
    broke = 8 * files.chunk + 11 * files.chunk
    assert [offset for offset, _ in files.calls] == [0, 8 * files.chunk, broke, broke + 1_000_000]
    assert all(limit == 1_000_000 for _, limit in files.calls)
    assert not list(tmp_path.glob("*.partial*"))


def test_interrupted_download_continues_from_the_partial_file(stand_in: tuple[Files, str], tmp_path: Path) -> None:
    files, address = stand_in
    data = os.urandom(1_000_000)
    files.files[(LATEST, "f.bin")] = data
    files.fatal_after = kept = 6 * files.chunk
    out = tmp_path / "f.bin"
    with client(address, tmp_path) as c:
        with pytest.raises(quarry.Internal):
            c.download("tab", "f.bin", out)
        assert not out.exists() and (tmp_path / "f.bin.partial").stat().st_size == kept
        files.fatal_after = None
        result = c.download("tab", "f.bin", out)
    assert out.read_bytes() == data
    assert (result.bytes_resumed, result.bytes_received) == (kept, len(data) - kept)
    # A file that changed since (its sha256 differs) starts over instead of mixing old and new bytes.
    files.fatal_after = 3 * files.chunk
    with client(address, tmp_path) as c, pytest.raises(quarry.Internal):
        c.download("tab", "f.bin", out)
    files.fatal_after = None
    files.files[(LATEST, "f.bin")] = changed = os.urandom(300_000)
    with client(address, tmp_path) as c:
        again = c.download("tab", "f.bin", out)
    assert out.read_bytes() == changed and again.bytes_resumed == 0


async def test_corrupted_bytes_are_refused_and_not_kept(stand_in: tuple[Files, str], tmp_path: Path) -> None:
    files, address = stand_in
    files.files[(LATEST, "x.bin")] = os.urandom(100_000)
    files.files[(LATEST, "empty.bin")] = b""
    files.corrupt = True
    out = tmp_path / "x.bin"
    async with quarry.AsyncClient(address, namespace="ns", cache_dir=tmp_path) as c:
        with pytest.raises(quarry.IntegrityError):
            await c.download("tab", "x.bin", out)
        leftovers = [tmp_path / "x.bin", tmp_path / "x.bin.partial", tmp_path / "x.bin.partial.json"]
        assert not any(path.exists() for path in leftovers)
        files.corrupt = False
        assert (await c.download("tab", "x.bin", out)).size == 100_000
        empty = await c.download("tab", "empty.bin", tmp_path / "empty.bin")
        assert empty.size == 0 and empty.sha256 == hashlib.sha256(b"").hexdigest()
        with pytest.raises(quarry.NotFound):
            await c.download("tab", "missing.bin", tmp_path / "m.bin")
        table = await c.preview("tab", "t.csv", rows=2)
    assert table.num_rows == 2 and table.column_names == ["id", "name"]
