"""Reading versions: DiffVersions, PreviewFile, GetFileStats, ReadFile and GetDownloadUrl (both stores).

Versions are made the way clients make them: uploads validated and promoted by a real worker, then
committed (CommitVersion for multi-file versions, auto_commit for single files). A module-scoped corpus per
store kind holds two versions of one dataset that most tests read; the 1 GB file lives on the file store only
(moto keeps S3 objects in memory).
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import io
import json
import math
import os
import subprocess
import sys
import sysconfig
import textwrap
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import grpc
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq
import pytest
from google.protobuf import duration_pb2
from grpc import aio
from quarry.v1 import capabilities_service_pb2 as cpb
from quarry.v1 import dataset_pb2, upload_pb2, version_pb2
from quarry.v1 import dataset_service_pb2 as dpb
from quarry.v1 import upload_service_pb2 as upb

from server.domain.budget import BufferBudget
from server.domain.caller import Caller
from server.domain.files import READ_MESSAGE_BYTES, Files
from server.domain.jsonrows import json_rows
from server.domain.listing import PageTokens
from server.domain.versions import Versions
from server.model.objects import ObjectStore, RandomReader
from server.model.versions import VersionView
from server.storage.db import Database, pool_of
from server.storage.objects.seekable import READ_AHEAD_BYTES, RangeFile
from tests.conftest import STORE_KINDS
from tests.samples import Sample, binary_sample, csv_sample, jsonl_sample
from tests.support import (
    Api,
    ServerHandle,
    diff_pages,
    error_info,
    field_violations,
    open_api,
    tampered_page_token,
    wait_version,
)
from tests.test_generated_client import generate_bare_client
from tests.uploading import MiB, chunk_messages, create_request, stream_of

FINAL = {upload_pb2.UPLOAD_STATE_PROMOTED, upload_pb2.UPLOAD_STATE_FAILED, upload_pb2.UPLOAD_STATE_CANCELLED}


# --- making versions through the API -------------------------------------------------------------------------


async def settle(api: Api, name: str, until: set[int]) -> upload_pb2.Upload:
    """Watch an upload until it reaches one of `until` (or a final state)."""
    async for message in api.uploads.WatchUpload(upb.WatchUploadRequest(name=name), timeout=60):
        if message.upload.state in until | FINAL:
            return message.upload  # type: ignore[no-any-return]
    raise AssertionError(f"{name} ended without reaching {until}")


async def upload(api: Api, dataset: str, sample: Sample) -> upload_pb2.Upload:
    """One Upload call with the whole file; the upload once VALIDATED."""
    header = upb.UploadHeader(create=create_request(dataset, sample.path, len(sample.data), sample.sha256))
    messages = [upb.UploadRequest(header=header), *chunk_messages(sample.data),
                upb.UploadRequest(finish=upb.UploadFinish())]
    sent = (await api.uploads.Upload(stream_of(messages))).upload
    done = await settle(api, sent.name, {upload_pb2.UPLOAD_STATE_VALIDATED})
    assert done.state != upload_pb2.UPLOAD_STATE_FAILED, (sample.path, done.failure)
    return done


async def ready_version(api: Api, name: str) -> version_pb2.Version:
    """Follow a version until READY (failing if it FAILED)."""
    version = await wait_version(api, name)
    assert version.state == version_pb2.VERSION_STATE_READY, version.failure
    return version  # type: ignore[no-any-return]


async def commit(api: Api, dataset: str, samples: list[Sample], delete: tuple[str, ...] = (),
                 base: str = "") -> version_pb2.Version:
    """Upload the samples at once, then commit them (and the deletions) as one version."""
    uploads = await asyncio.gather(*(upload(api, dataset, s) for s in samples))
    parent = f"{api.parent}/datasets/{dataset}"
    version = (await api.datasets.CommitVersion(dpb.CommitVersionRequest(
        parent=parent, base_version=base, uploads=[u.name for u in uploads], delete_paths=list(delete)))).version
    return await ready_version(api, version.name)


# --- the files ----------------------------------------------------------------------------------------------


def multi_group_parquet(path: str = "groups.parquet", rows: int = 80_000, groups: int = 8) -> Sample:
    """Random (incompressible) numbers in `groups` row groups: about 2.6 MB."""
    rng = np.random.default_rng(7)
    table = pa.table({"id": pa.array(np.arange(rows), pa.int64()), "x": rng.random(rows), "y": rng.random(rows),
                      "label": pa.array([f"l{i % 13}" for i in range(rows)])})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=rows // groups, compression="none")
    return Sample(path, buffer.getvalue(), "PARQUET", rows, ())


def typed_parquet(path: str = "types.parquet") -> Sample:
    """Values JSON cannot carry as they are: timestamps, dates, bytes, NaN, integers beyond 2^53, lists."""
    table = pa.table({
        "ts": pa.array([1_700_000_000_123_456, None, 0], pa.timestamp("us", tz="UTC")),
        "day": pa.array([datetime.date(2024, 2, 29), None, datetime.date(1970, 1, 1)], pa.date32()),
        "blob": pa.array([b"\x00\xff", None, b""], pa.binary()),
        "ratio": pa.array([float("nan"), 1.5, float("inf")], pa.float64()),
        "big": pa.array([2**60, 7, -(2**53)], pa.int64()),
        "tags": pa.array([["a", "b"], [], None], pa.list_(pa.string())),
    })
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return Sample(path, buffer.getvalue(), "PARQUET", 3, ())


def csv_v2(rows: int = 30) -> Sample:
    """a.csv again: `extra` removed, `note` added, `score` now text."""
    lines = ["id,name,score,note"] + [f"{i},name-{i},s{i},n{i}" for i in range(rows)]
    return Sample("a.csv", ("\n".join(lines) + "\n").encode(), "CSV", rows, ())


def text_sample(path: str = "notes.txt") -> Sample:
    return Sample(path, b"just some notes\n" * 20, "TEXT", 0, ())


@dataclass
class Corpus:
    """Two versions of dataset `tab` in a namespace of its own, on one store kind."""

    kind: str
    api: Api
    server: ServerHandle
    store: ObjectStore
    v1: version_pb2.Version
    v2: version_pb2.Version
    first: dict[str, Sample]
    second: dict[str, Sample]

    @property
    def dataset(self) -> str:
        return f"{self.api.parent}/datasets/tab"


async def dataset_on(request: pytest.FixtureRequest, dataset_id: str) -> tuple[str, ServerHandle, Api]:
    """For a module fixture run once per store kind (request.param): the kind, that kind's server (with a worker)
    and a namespace of its own holding dataset `dataset_id`, which allows breaking schema changes."""
    kind: str = request.param
    server: ServerHandle = request.getfixturevalue(f"server_{kind}")
    request.getfixturevalue(f"worker_{kind}")
    api = open_api(server.address)
    rules = dataset_pb2.DatasetRules(allow_breaking_schema_changes=True)
    await api.datasets.CreateDataset(dpb.CreateDatasetRequest(dataset_id=dataset_id, dataset=dataset_pb2.Dataset(
        rules=rules)))
    return kind, server, api


@pytest.fixture(scope="module", params=STORE_KINDS)
async def corpus(request: pytest.FixtureRequest, stores: dict[str, ObjectStore]) -> AsyncIterator[Corpus]:
    kind, server, api = await dataset_on(request, "tab")
    first = [csv_sample(50, "a.csv", extra_column=True), jsonl_sample(120, "b.jsonl"), multi_group_parquet(),
             typed_parquet(), binary_sample(2_500_000, "blob.bin"), text_sample(), csv_sample(10, "same.csv"),
             csv_sample(60_000, "wide.csv")]
    v1 = await commit(api, "tab", first)
    second = [csv_v2(), jsonl_sample(7, "d.jsonl"), binary_sample(1000, "blob.bin")]
    v2 = await commit(api, "tab", second, delete=("b.jsonl",), base=v1.name)
    yield Corpus(kind, api, server, stores[kind], v1, v2, {s.path: s for s in first},
                 {s.path: s for s in second})
    await api.channel.close()


async def failure(call: Any) -> aio.AioRpcError:
    """The error a call fails with."""
    with pytest.raises(aio.AioRpcError) as caught:
        await call
    return caught.value


# --- DiffVersions -------------------------------------------------------------------------------------------


async def test_diff_lists_added_removed_and_changed_files_with_schema_changes(corpus: Corpus) -> None:
    api = corpus.api
    diff = await api.datasets.DiffVersions(dpb.DiffVersionsRequest(base_version=corpus.v1.name,
                                                                   target_version=corpus.v2.name))
    kinds = [(c.path, dpb.ChangeKind.Name(c.kind)) for c in diff.changes]
    assert kinds == [("a.csv", "CHANGE_KIND_MODIFIED"), ("b.jsonl", "CHANGE_KIND_REMOVED"),
                     ("blob.bin", "CHANGE_KIND_MODIFIED"), ("d.jsonl", "CHANGE_KIND_ADDED")]
    assert diff.unchanged_count == 5  # groups.parquet, notes.txt, same.csv, types.parquet, wide.csv
    table, removed, blob, added = diff.changes
    assert table.base.sha256 == corpus.first["a.csv"].sha256 and table.target.sha256 == corpus.second["a.csv"].sha256
    change = table.schema_change
    assert [(c.name, c.type) for c in change.added] == [("note", "string")]
    assert [(c.name, c.type) for c in change.removed] == [("extra", "int64")]
    assert [(c.name, c.base_type, c.target_type) for c in change.retyped] == [("score", "double", "string")]
    assert (change.base_row_count, change.target_row_count) == (50, 30)
    assert removed.HasField("base") and not removed.HasField("target") and not removed.HasField("schema_change")
    assert removed.base.row_count == 120
    assert blob.base.size_bytes == 2_500_000 and blob.target.size_bytes == 1000
    assert not blob.HasField("schema_change")  # not a table
    assert added.target.path == "d.jsonl" and not added.HasField("base")
    # The other way round, by "latest" and by uid: the mirror image.
    back = await api.datasets.DiffVersions(dpb.DiffVersionsRequest(
        base_version=f"{corpus.dataset}/versions/latest", target_version=f"{corpus.dataset}/versions/{corpus.v1.uid}"))
    assert [(c.path, dpb.ChangeKind.Name(c.kind)) for c in back.changes] == [
        ("a.csv", "CHANGE_KIND_MODIFIED"), ("b.jsonl", "CHANGE_KIND_ADDED"), ("blob.bin", "CHANGE_KIND_MODIFIED"),
        ("d.jsonl", "CHANGE_KIND_REMOVED")]
    assert [c.name for c in back.changes[0].schema_change.added] == ["extra"]
    same = await api.datasets.DiffVersions(dpb.DiffVersionsRequest(base_version=corpus.v1.name,
                                                                   target_version=corpus.v1.name))
    assert not same.changes and same.unchanged_count == 8


async def test_diff_pages_by_path(corpus: Corpus) -> None:
    api = corpus.api
    whole = await api.datasets.DiffVersions(dpb.DiffVersionsRequest(base_version=corpus.v1.name,
                                                                    target_version=corpus.v2.name))
    assert len(whole.changes) == 4 and not whole.next_page_token  # 0: as many as one answer holds
    for size, counts in ((1, [1, 1, 1, 1]), (3, [3, 1]), (4, [4]), (10_001, [4])):
        request = dpb.DiffVersionsRequest(base_version=corpus.v1.name, target_version=corpus.v2.name,
                                          page_size=size, view=dpb.VERSION_VIEW_FULL)
        pages = await diff_pages(api, request)
        assert [len(p.changes) for p in pages] == counts, size
        assert [c for p in pages for c in p.changes] == [c for c in (await api.datasets.DiffVersions(
            dpb.DiffVersionsRequest(base_version=corpus.v1.name, target_version=corpus.v2.name,
                                    view=dpb.VERSION_VIEW_FULL))).changes]
        assert {p.unchanged_count for p in pages} == {5}  # the whole comparison's, on every page
    first = await api.datasets.DiffVersions(dpb.DiffVersionsRequest(
        base_version=corpus.v1.name, target_version=corpus.v2.name, page_size=1))
    assert [c.path for c in first.changes] == ["a.csv"] and first.next_page_token
    # A token continues only the request it came from; a bad size or token is refused, naming the field.
    for changed in ({"view": dpb.VERSION_VIEW_FULL}, {"target_version": f"{corpus.dataset}/versions/latest"},
                    {"base_version": corpus.v2.name, "target_version": corpus.v1.name}):
        request = dpb.DiffVersionsRequest(base_version=corpus.v1.name, target_version=corpus.v2.name, page_size=1,
                                          page_token=first.next_page_token)
        for field, value in changed.items():
            setattr(request, field, value)
        refused = await failure(api.datasets.DiffVersions(request))
        assert (refused.code(), error_info(refused)[0]) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PAGE_TOKEN")
        assert field_violations(refused) == ["page_token"], changed
    bad = [(-1, "", "INVALID_PAGE_SIZE"), (1, tampered_page_token(first.next_page_token), "INVALID_PAGE_TOKEN"),
           (1, "garbage!", "INVALID_PAGE_TOKEN")]
    for size, token, reason in bad:
        refused = await failure(api.datasets.DiffVersions(dpb.DiffVersionsRequest(
            base_version=corpus.v1.name, target_version=corpus.v2.name, page_size=size, page_token=token)))
        assert (refused.code(), error_info(refused)[0]) == (grpc.StatusCode.INVALID_ARGUMENT, reason)
        assert field_violations(refused) == ["page_size" if size < 0 else "page_token"]


async def test_a_diff_page_stops_before_it_outgrows_one_answer(corpus: Corpus) -> None:
    # The domain's diff in this process, over the server's database, with room for about one change an answer.
    whole = await corpus.api.datasets.DiffVersions(dpb.DiffVersionsRequest(
        base_version=corpus.v1.name, target_version=corpus.v2.name, view=dpb.VERSION_VIEW_FULL))
    async with pool_of(corpus.server.env["QUARRY_DATABASE_URL"], 10, max_size=2) as pool:
        db = Database(pool)
        tokens = PageTokens(b"test")
        files = Files(db, corpus.store, Versions(db, None, None, tokens, 100), 10_000, tokens,  # type: ignore[arg-type]
                      100, BufferBudget(64 << 20, 1), 4 << 20, answer_bytes=1)
        caller, pages, token = Caller(corpus.api.namespace), [], ""
        while True:
            page = await files.diff(caller, corpus.v1.name, corpus.v2.name, VersionView.FULL, 0, token)
            pages.append(page)
            if not (token := page.next_token):
                break
    assert [len(p.changes) for p in pages] == [1, 1, 1, 1]  # asked for any number: the bytes decide
    assert [c.path for p in pages for c in p.changes] == [c.path for c in whole.changes]
    assert {p.unchanged_count for p in pages} == {whole.unchanged_count}


async def test_a_diff_being_paged_keeps_its_versions_when_latest_moves(corpus: Corpus) -> None:
    api = open_api(corpus.server.address)  # a namespace of its own: the corpus's holds tab alone
    await api.datasets.CreateDataset(dpb.CreateDatasetRequest(dataset_id="moving"))
    dataset = f"{api.parent}/datasets/moving"
    first = await commit(api, "moving", [text_sample(f"n{i}.txt") for i in range(3)])
    await commit(api, "moving", [Sample(f"n{i}.txt", b"second\n" * (i + 1), "TEXT", 0, ()) for i in range(3)],
                 base=first.name)
    request = dpb.DiffVersionsRequest(base_version=f"{dataset}/versions/1", target_version=f"{dataset}/versions/latest",
                                      page_size=1)
    page = await api.datasets.DiffVersions(request)
    assert [c.path for c in page.changes] == ["n0.txt"]
    # Version 3 becomes latest, changing one path more: the comparison under way still ends at version 2.
    third = await commit(api, "moving", [text_sample("n9.txt")], base=f"{dataset}/versions/2")
    assert third.number == 3
    rest = await diff_pages(api, dpb.DiffVersionsRequest(base_version=request.base_version,
                                                         target_version=request.target_version, page_size=1,
                                                         page_token=page.next_page_token))
    assert [c.path for p in rest for c in p.changes] == ["n1.txt", "n2.txt"]
    fresh = await api.datasets.DiffVersions(dpb.DiffVersionsRequest(base_version=request.base_version,
                                                                    target_version=request.target_version))
    assert [c.path for c in fresh.changes] == ["n0.txt", "n1.txt", "n2.txt", "n9.txt"]
    await api.channel.close()


async def test_diff_refuses_bad_pairs(corpus: Corpus) -> None:
    api, dataset = corpus.api, corpus.dataset
    other = await failure(api.datasets.DiffVersions(dpb.DiffVersionsRequest(
        base_version=corpus.v1.name, target_version=f"{api.parent}/datasets/other/versions/1")))
    assert other.code() == grpc.StatusCode.INVALID_ARGUMENT and error_info(other)[0] == "DIFFERENT_DATASETS"
    assert field_violations(other) == ["target_version"]
    missing = await failure(api.datasets.DiffVersions(dpb.DiffVersionsRequest(
        base_version=corpus.v1.name, target_version=f"{dataset}/versions/99")))
    assert missing.code() == grpc.StatusCode.NOT_FOUND and error_info(missing)[0] == "VERSION_NOT_FOUND"
    bad = await failure(api.datasets.DiffVersions(dpb.DiffVersionsRequest(base_version="datasets/tab/1",
                                                                          target_version=corpus.v2.name)))
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT and field_violations(bad) == ["base_version"]
    foreign = "namespaces/someone-else/datasets/tab/versions/"
    elsewhere = await failure(api.datasets.DiffVersions(dpb.DiffVersionsRequest(base_version=foreign + "1",
                                                                                target_version=foreign + "2")))
    assert elsewhere.code() == grpc.StatusCode.PERMISSION_DENIED


# --- PreviewFile --------------------------------------------------------------------------------------------


def source_rows(sample: Sample) -> list[dict[str, Any]]:
    """Every row of a sample, as pyarrow reads the file by itself."""
    data = io.BytesIO(sample.data)
    if sample.format == "CSV":
        return pa_csv.read_csv(data).to_pylist()  # type: ignore[no-any-return]
    if sample.format == "JSONL":
        return pa_json.read_json(data).to_pylist()  # type: ignore[no-any-return]
    return pq.read_table(data).to_pylist()  # type: ignore[no-any-return]


@pytest.mark.parametrize("path, limit, expected", [
    ("a.csv", 0, 50), ("a.csv", 7, 7), ("b.jsonl", 0, 100), ("b.jsonl", 120, 120), ("groups.parquet", 0, 100),
    ("groups.parquet", 10_000, 10_000), ("wide.csv", 2500, 2500),
])
async def test_preview_returns_the_first_rows_in_both_encodings(corpus: Corpus, path: str, limit: int,
                                                                expected: int) -> None:
    sample = corpus.first[path]
    response = await corpus.api.datasets.PreviewFile(dpb.PreviewFileRequest(version=corpus.v1.name, path=path,
                                                                             row_limit=limit))
    assert response.row_count == expected and response.total_rows == sample.rows
    rows = source_rows(sample)[:expected]
    table = pa.ipc.open_stream(response.arrow_ipc_stream).read_all()
    assert table.num_rows == expected and table.to_pylist() == rows
    assert [json.loads(row) for row in response.json_rows] == rows
    assert [(c.name, c.type) for c in response.columns] == [(f.name, str(f.type)) for f in table.schema]


async def test_preview_makes_json_safe_values(corpus: Corpus) -> None:
    response = await corpus.api.datasets.PreviewFile(dpb.PreviewFileRequest(version=corpus.v1.name,
                                                                             path="types.parquet"))
    rows = [json.loads(row) for row in response.json_rows]
    assert rows == [
        {"ts": "2023-11-14T22:13:20.123456Z", "day": "2024-02-29", "blob": "AP8=", "ratio": None,
         "big": str(2**60), "tags": ["a", "b"]},
        {"ts": None, "day": None, "blob": None, "ratio": 1.5, "big": 7, "tags": []},
        {"ts": "1970-01-01T00:00:00.000000Z", "day": "1970-01-01", "blob": "", "ratio": None, "big": str(-(2**53)),
         "tags": None},
    ]
    # The Arrow encoding keeps every value as it is (NaN and all).
    table = pa.ipc.open_stream(response.arrow_ipc_stream).read_all()
    source = pq.read_table(io.BytesIO(corpus.first["types.parquet"].data))
    assert table.drop_columns(["ratio"]).equals(source.drop_columns(["ratio"]))
    ratio = table.column("ratio").to_pylist()
    assert math.isnan(ratio[0]) and ratio[1:] == [1.5, math.inf]


def test_json_rows_of_nanoseconds_durations_and_times() -> None:
    table = pa.table({
        "ns": pa.array([1_000_000_001, None], pa.timestamp("ns")),
        "paris": pa.array([0, 1], pa.timestamp("s", tz="Europe/Paris")),
        "took": pa.array([1_500_000, None], pa.duration("us")),
        "at": pa.array([3_723_000_000_001, None], pa.time64("ns")),
        "cash": pa.array([None, None], pa.decimal128(10, 2)),
    })
    assert [json.loads(r) for r in json_rows(table)] == [
        {"ns": "1970-01-01T00:00:01.000000001", "paris": "1970-01-01T00:00:00Z", "took": 1.5,
         "at": "01:02:03.000000001", "cash": None},
        {"ns": None, "paris": "1970-01-01T00:00:01Z", "took": None, "at": None, "cash": None},
    ]


async def test_preview_refuses_bad_requests(corpus: Corpus) -> None:
    api, v1 = corpus.api, corpus.v1.name
    most = (await api.capabilities.GetCapabilities(cpb.GetCapabilitiesRequest())).max_preview_rows
    for limit in (-1, most + 1):
        error = await failure(api.datasets.PreviewFile(dpb.PreviewFileRequest(version=v1, path="a.csv",
                                                                               row_limit=limit)))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and field_violations(error) == ["row_limit"]
        assert error_info(error)[0] == "INVALID_ROW_LIMIT"
    at_most = await api.datasets.PreviewFile(dpb.PreviewFileRequest(version=v1, path="a.csv", row_limit=most))
    assert at_most.row_count == 50
    for path in ("blob.bin", "notes.txt"):
        error = await failure(api.datasets.PreviewFile(dpb.PreviewFileRequest(version=v1, path=path)))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and error_info(error)[0] == "NOT_TABULAR"
    await assert_file_errors(corpus, lambda version, path: api.datasets.PreviewFile(
        dpb.PreviewFileRequest(version=version, path=path)))


async def assert_file_errors(corpus: Corpus, call: Any) -> None:
    """The errors every per-file method shares: missing path or version, malformed names, other namespaces."""
    v1, dataset = corpus.v1.name, corpus.dataset
    missing = await failure(call(v1, "d.jsonl"))  # only in version 2
    assert missing.code() == grpc.StatusCode.NOT_FOUND and error_info(missing) == ("FILE_NOT_FOUND",
                                                                                   {"path": "d.jsonl"})
    no_version = await failure(call(f"{dataset}/versions/99", "a.csv"))
    assert no_version.code() == grpc.StatusCode.NOT_FOUND and error_info(no_version)[0] == "VERSION_NOT_FOUND"
    no_dataset = await failure(call(f"{corpus.api.parent}/datasets/nope/versions/1", "a.csv"))
    assert no_dataset.code() == grpc.StatusCode.NOT_FOUND
    for name in ("", "tab/1", f"{dataset}/versions/zero", f"{dataset}/versions/0", f"{dataset}/files/1"):
        bad = await failure(call(name, "a.csv"))
        assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT and field_violations(bad) == ["version"], name
    for path in ("", "/a.csv", "../a.csv", "x//a.csv"):
        bad = await failure(call(v1, path))
        assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT and field_violations(bad) == ["path"], path
    foreign = await failure(call("namespaces/someone-else/datasets/tab/versions/1", "a.csv"))
    assert foreign.code() == grpc.StatusCode.PERMISSION_DENIED


# --- what a preview reads -----------------------------------------------------------------------------------


class CountingStore:
    """The real store, counting the bytes its range reads serve."""

    def __init__(self, inner: ObjectStore) -> None:
        self._inner = inner
        self.served = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)

    async def read(self, key: str, offset: int = 0, length: int | None = None,
                   chunk_bytes: int = MiB) -> AsyncIterator[bytes]:
        async for chunk in self._inner.read(key, offset, length, chunk_bytes):
            self.served += len(chunk)
            yield chunk

    read_range = ObjectStore.read_range  # through the counting `read` above

    async def open_random(self, key: str, size: int) -> RandomReader:
        """The real store's reader where reads are local; elsewhere the same range reads, through `read` above."""
        reader = await self._inner.open_random(key, size)
        if not reader.remote:
            return reader
        reader.close()
        return RangeFile.of_object(self, key, size, asyncio.get_running_loop())  # type: ignore[arg-type]


async def test_preview_reads_only_the_footer_and_first_row_group(corpus: Corpus) -> None:
    async with pool_of(corpus.server.env["QUARRY_DATABASE_URL"], 10, max_size=2) as pool:
        await check_preview_reads(corpus, pool)


async def check_preview_reads(corpus: Corpus, pool: asyncpg.Pool) -> None:
    """The domain's preview in this process, over the server's database and a store that counts what it serves."""
    store = CountingStore(corpus.store)
    db = Database(pool)
    files = Files(db, store, Versions(db, None, None, PageTokens(b"unused"), 100), 10_000, PageTokens(b"unused"),  # type: ignore[arg-type]
                  100, BufferBudget(64 << 20, 1), 4 << 20)
    caller = Caller(corpus.api.namespace)
    sample = corpus.first["groups.parquet"]
    metadata = pq.ParquetFile(io.BytesIO(sample.data)).metadata
    first_group = metadata.row_group(0).total_byte_size
    assert metadata.num_row_groups == 8
    preview = await files.preview(caller, corpus.v1.name, "groups.parquet", 10)
    assert preview.row_count == 10
    # The footer (pyarrow reads the last 64 KiB at once), and the first row group's column chunks in read-ahead
    # blocks (the last block may run past the group's end by less than a block), never the other groups.
    footer = max(64 << 10, metadata.serialized_size + 8)
    assert preview.bytes_read <= footer + first_group + READ_AHEAD_BYTES
    assert preview.bytes_read < len(sample.data) / 3
    # A local file is read by pyarrow itself (pread); other stores serve exactly the ranges the preview asked for.
    assert store.served == (0 if corpus.kind == "file" else preview.bytes_read)
    store.served = 0
    wide = corpus.first["wide.csv"]
    lines = await files.preview(caller, corpus.v1.name, "wide.csv", 10)
    assert lines.row_count == 10 and lines.bytes_read == 64 << 10 and store.served == 64 << 10
    assert len(wide.data) > 20 * lines.bytes_read


# --- GetFileStats -------------------------------------------------------------------------------------------


async def test_file_stats_are_the_ones_computed_at_validation(corpus: Corpus) -> None:
    api = corpus.api
    stats = await api.datasets.GetFileStats(dpb.GetFileStatsRequest(version=corpus.v1.name, path="a.csv"))
    assert stats.row_count == 50
    assert [(c.name, c.type) for c in stats.columns] == [("id", "int64"), ("name", "string"), ("score", "double"),
                                                          ("extra", "int64")]
    by_name = {c.name: c for c in stats.columns}
    assert (by_name["id"].min, by_name["id"].max, by_name["id"].null_count) == ("0", "49", 0)
    assert 45 <= by_name["id"].distinct_estimate <= 55 and by_name["id"].source
    parquet = await api.datasets.GetFileStats(dpb.GetFileStatsRequest(version=corpus.v1.name,
                                                                      path="groups.parquet"))
    assert parquet.row_count == 80_000 and [c.name for c in parquet.columns] == ["id", "x", "y", "label"]
    assert (parquet.columns[0].min, parquet.columns[0].max) == ("0", "79999")
    later = await api.datasets.GetFileStats(dpb.GetFileStatsRequest(version=corpus.v2.name, path="a.csv"))
    assert later.row_count == 30 and [c.name for c in later.columns] == ["id", "name", "score", "note"]
    error = await failure(api.datasets.GetFileStats(dpb.GetFileStatsRequest(version=corpus.v1.name,
                                                                            path="blob.bin")))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and error_info(error)[0] == "NOT_TABULAR"
    await assert_file_errors(corpus, lambda version, path: api.datasets.GetFileStats(
        dpb.GetFileStatsRequest(version=version, path=path)))


# --- ReadFile -----------------------------------------------------------------------------------------------


async def read_all(api: Api, version: str, path: str, offset: int = 0, limit: int = 0) -> list[Any]:
    return [m async for m in api.datasets.ReadFile(dpb.ReadFileRequest(version=version, path=path, offset=offset,
                                                                       limit=limit))]


async def test_read_file_streams_bytes_with_offset_and_limit(corpus: Corpus) -> None:
    api, v1 = corpus.api, corpus.v1.name
    blob = corpus.first["blob.bin"]
    messages = await read_all(api, v1, "blob.bin")
    assert b"".join(m.data for m in messages) == blob.data
    assert [m.offset for m in messages] == [i * READ_MESSAGE_BYTES for i in range(3)]  # ~1 MiB messages
    assert {(m.file_size_bytes, m.sha256) for m in messages} == {(len(blob.data), blob.sha256)}
    window = await read_all(api, v1, "blob.bin", offset=1_000_000, limit=1_200_000)
    assert b"".join(m.data for m in window) == blob.data[1_000_000:2_200_000] and window[0].offset == 1_000_000
    assert [m.offset for m in window] == [1_000_000, 1_000_000 + READ_MESSAGE_BYTES]
    clipped = await read_all(api, v1, "blob.bin", offset=len(blob.data) - 10, limit=100)
    assert [(m.offset, m.data) for m in clipped] == [(len(blob.data) - 10, blob.data[-10:])]
    small = await read_all(api, corpus.v2.name, "blob.bin", offset=3, limit=5)
    assert [(m.offset, m.data) for m in small] == [(3, corpus.second["blob.bin"].data[3:8])]
    # Reading at the end reads nothing: the stream ends without a message.
    assert await read_all(api, v1, "blob.bin", offset=len(blob.data)) == []
    past = await failure(read_all(api, v1, "blob.bin", offset=len(blob.data) + 1))
    assert past.code() == grpc.StatusCode.OUT_OF_RANGE
    assert error_info(past) == ("OFFSET_OUT_OF_RANGE", {"size": str(len(blob.data))})
    for offset, limit, field, reason in ((-1, 0, "offset", "INVALID_OFFSET"), (0, -5, "limit", "INVALID_LIMIT")):
        bad = await failure(read_all(api, v1, "blob.bin", offset=offset, limit=limit))
        assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT and field_violations(bad) == [field]
        assert error_info(bad)[0] == reason
    await assert_file_errors(corpus, lambda version, path: read_all(api, version, path))


# --- GetDownloadUrl -----------------------------------------------------------------------------------------


def ttl(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromNanoseconds(int(seconds * 1e9))
    return value


async def test_download_url_is_presigned_on_s3_and_unimplemented_on_the_local_store(corpus: Corpus) -> None:
    api, v1 = corpus.api, corpus.v1.name
    for seconds in (-1, 3600 + 1, 7 * 86400):  # QUARRY_MAX_URL_TTL_SECONDS is 3600 by default
        bad = await failure(api.datasets.GetDownloadUrl(dpb.GetDownloadUrlRequest(version=v1, path="a.csv",
                                                                                  ttl=ttl(seconds))))
        assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT and field_violations(bad) == ["ttl"]
        assert error_info(bad)[0] == "INVALID_TTL"
    if corpus.kind == "file":
        error = await failure(api.datasets.GetDownloadUrl(dpb.GetDownloadUrlRequest(version=v1, path="a.csv")))
        assert error.code() == grpc.StatusCode.UNIMPLEMENTED and error_info(error)[0] == "DOWNLOAD_URL_UNSUPPORTED"
        assert "ReadFile" in (error.details() or "")
        return
    now = time.time()
    default = await api.datasets.GetDownloadUrl(dpb.GetDownloadUrlRequest(version=v1, path="blob.bin"))
    assert abs(default.expire_time.ToSeconds() - (now + 3600)) < 30
    short = await api.datasets.GetDownloadUrl(dpb.GetDownloadUrlRequest(version=v1, path="a.csv", ttl=ttl(90)))
    assert abs(short.expire_time.ToSeconds() - (now + 90)) < 30
    longest = await api.datasets.GetDownloadUrl(dpb.GetDownloadUrlRequest(version=v1, path="a.csv", ttl=ttl(3600)))
    assert abs(longest.expire_time.ToSeconds() - (now + 3600)) < 30
    async with aiohttp.ClientSession() as session:
        for response, sample in ((default, corpus.first["blob.bin"]), (short, corpus.first["a.csv"])):
            async with session.get(response.url) as got:
                assert got.status == 200
                assert await got.read() == sample.data
    await assert_file_errors(corpus, lambda version, path: api.datasets.GetDownloadUrl(
        dpb.GetDownloadUrlRequest(version=version, path=path)))


# --- a client made from proto/ alone ------------------------------------------------------------------------

BARE_CLIENT = textwrap.dedent("""
    import hashlib, json, sys
    import grpc
    import pyarrow.ipc
    import quarry
    assert all(p.startswith(sys.argv[2]) for p in quarry.__path__), list(quarry.__path__)  # generated here
    from quarry.v1 import dataset_service_pb2 as pb, dataset_service_pb2_grpc as pb_grpc

    address, _, namespace, version, path, sha256, token = sys.argv[1:8]
    metadata = (("x-quarry-namespace", namespace), ("authorization", "Bearer " + token))
    stub = pb_grpc.DatasetServiceStub(grpc.insecure_channel(address))
    listed = stub.ListDatasets(pb.ListDatasetsRequest(), metadata=metadata, timeout=10)
    assert [d.name for d in listed.datasets] == [f"namespaces/{namespace}/datasets/tab"], listed
    data = b"".join(m.data for m in stub.ReadFile(pb.ReadFileRequest(version=version, path=path),
                                                 metadata=metadata, timeout=30))
    assert hashlib.sha256(data).hexdigest() == sha256
    preview = stub.PreviewFile(pb.PreviewFileRequest(version=version, path=path, row_limit=5), metadata=metadata,
                               timeout=10)
    table = pyarrow.ipc.open_stream(preview.arrow_ipc_stream).read_all()
    assert table.to_pylist() == [json.loads(row) for row in preview.json_rows]
    print("OK", len(listed.datasets), len(data), preview.row_count, preview.total_rows)
""")


@pytest.mark.parametrize("corpus", ["file"], indirect=True)  # the contract does not depend on the store
async def test_a_client_made_only_from_proto_lists_reads_and_previews(corpus: Corpus, tmp_path: Path) -> None:
    generate_bare_client(tmp_path)
    (tmp_path / "client.py").write_text(BARE_CLIENT)
    sample = corpus.first["a.csv"]
    site_packages = sysconfig.get_paths()["purelib"]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-S", str(tmp_path / "client.py"), corpus.server.address, str(tmp_path),
        corpus.api.namespace, corpus.v1.name, "a.csv", sample.sha256, corpus.api.token,
        env={"PYTHONPATH": f"{tmp_path}:{site_packages}"}, cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    assert out.decode().split() == ["OK", "1", str(len(sample.data)), "5", "50"]


# --- a 1 GB file: flat memory, and a slow reader holds the server back --------------------------------------

BIG = 1 << 30
BLOCK = os.urandom(MiB)


@dataclass
class BigFile:
    """A 1 GB file in a version of its own on the file store."""

    api: Api
    server: ServerHandle
    version: str
    path: str
    sha256: str


@pytest.fixture(scope="module")
async def big_file(server_file: ServerHandle, worker_file: object,
                   stores: dict[str, ObjectStore]) -> AsyncIterator[BigFile]:
    api = open_api(server_file.address)
    digest = hashlib.sha256()
    for _ in range(BIG // MiB):
        digest.update(BLOCK)
    chunk = BLOCK * 4

    async def messages() -> AsyncIterator[upb.UploadRequest]:
        yield upb.UploadRequest(header=upb.UploadHeader(create=create_request(
            "huge", "big.bin", BIG, digest.hexdigest(), auto_commit=True)))
        for _ in range(BIG // len(chunk)):
            yield upb.UploadRequest(chunk=upb.UploadChunk(data=chunk))
        yield upb.UploadRequest(finish=upb.UploadFinish())

    sent = (await api.uploads.Upload(messages(), timeout=300)).upload
    done = await settle(api, sent.name, {upload_pb2.UPLOAD_STATE_PROMOTED})
    assert done.state == upload_pb2.UPLOAD_STATE_PROMOTED, done.failure
    yield BigFile(api, server_file, done.version, "big.bin", digest.hexdigest())
    # The garbage collector would take an hour: free the disk now (the test's namespace is never used again).
    dataset = (await api.datasets.GetDataset(dpb.GetDatasetRequest(name=f"{api.parent}/datasets/huge"))).dataset
    await stores["file"].delete(f"fresh/{api.namespace}/{dataset.uid}/objects/{digest.hexdigest()}")
    await api.channel.close()


def proc_status(pid: int, field: str) -> int:
    """A size field of /proc/<pid>/status (VmRSS, VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field}")


def bytes_read_by(pid: int) -> int:
    """Bytes the process has read through read(2) and friends (files and sockets): /proc/<pid>/io rchar."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar")


class RssSampler:
    """Samples a process's VmRSS every few milliseconds in a thread, keeping the largest."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = proc_status(pid, "VmRSS")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, proc_status(self.pid, "VmRSS"))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.slow
async def test_read_file_of_1_gb_keeps_server_memory_flat(big_file: BigFile) -> None:
    pid = big_file.server.process.pid
    baseline = proc_status(pid, "VmRSS")
    digest = hashlib.sha256()
    position = 0
    with RssSampler(pid) as rss:
        async for message in big_file.api.datasets.ReadFile(dpb.ReadFileRequest(version=big_file.version,
                                                                                path=big_file.path)):
            assert message.offset == position and len(message.data) == READ_MESSAGE_BYTES
            digest.update(message.data)
            position += len(message.data)
    assert position == BIG and digest.hexdigest() == big_file.sha256
    growth = rss.peak - baseline
    assert growth < 64 * MiB, f"server RSS grew by {growth / MiB:.0f} MiB while streaming 1 GiB"


@pytest.mark.slow
async def test_a_slow_reader_makes_the_server_wait(big_file: BigFile) -> None:
    pid = big_file.server.process.pid
    baseline = proc_status(pid, "VmRSS")
    read_before = bytes_read_by(pid)
    call = big_file.api.datasets.ReadFile(dpb.ReadFileRequest(version=big_file.version, path=big_file.path))
    received = 0
    async for message in call:
        received += len(message.data)
        await asyncio.sleep(0.3)  # under test: a slow reader
        if received >= 3 * MiB:
            break
    await asyncio.sleep(1)  # time for a server that does not wait to run far ahead
    ahead = bytes_read_by(pid) - read_before
    held = bytes_read_by(pid)
    await asyncio.sleep(0.5)  # under test: nothing more is read while the reader waits
    still = bytes_read_by(pid) - held
    call.cancel()
    # The server read what the reader took plus what the transport's windows hold, not the file.
    assert ahead < 32 * MiB, f"the server read {ahead / MiB:.0f} MiB for a reader that took {received / MiB} MiB"
    assert still < MiB, f"the server kept reading ({still} bytes) while the reader waited"
    assert proc_status(pid, "VmRSS") - baseline < 64 * MiB
