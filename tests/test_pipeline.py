"""Workers end to end: validation, promotion into immutable versions, commits, conflicts (both stores)."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc import aio
from quarry.v1 import common_pb2, dataset_pb2, upload_pb2, version_pb2
from quarry.v1 import dataset_service_pb2 as dpb
from quarry.v1 import upload_service_pb2 as pb

from tests.conftest import Env
from tests.samples import Sample, binary_sample, csv_sample, jsonl_sample, parquet_sample
from tests.support import Api, error_info, eventually, wait_version
from tests.uploading import create_request, resume_messages, stream_of

FINAL = {upload_pb2.UPLOAD_STATE_PROMOTED, upload_pb2.UPLOAD_STATE_FAILED, upload_pb2.UPLOAD_STATE_CANCELLED}


async def watch_states(api: Api, name: str, until: set[int] = FINAL,
                       subscribed: asyncio.Event | None = None) -> list[int]:
    """The states a watch of `name` reports until one of `until`; `subscribed` is set at the first message."""
    states = []
    async for message in api.uploads.WatchUpload(pb.WatchUploadRequest(name=name)):
        states.append(message.upload.state)
        if subscribed is not None:
            subscribed.set()
        if message.upload.state in until:
            break
    return states


async def upload_and_watch(api: Api, dataset: str, sample: Sample, *, auto_commit: bool = True,
                           declared_sha: str | None = None) -> tuple[upload_pb2.Upload, list[int]]:
    """Create an upload, watch it from the start, send the bytes, and wait for a final state."""
    sha = sample.sha256 if declared_sha is None else declared_sha
    created = (await api.uploads.CreateUpload(create_request(dataset, sample.path, len(sample.data), sha,
                                                             auto_commit=auto_commit))).upload
    subscribed = asyncio.Event()
    watcher = asyncio.ensure_future(watch_states(api, created.name, FINAL if auto_commit else
                                                 FINAL | {upload_pb2.UPLOAD_STATE_VALIDATED}, subscribed))
    # The watch's first message is the state when it subscribed: from then on it misses no change.
    await asyncio.wait_for(asyncio.wait([watcher, asyncio.ensure_future(subscribed.wait())],
                                        return_when=asyncio.FIRST_COMPLETED), 30)
    assert subscribed.is_set(), watcher.result()
    await api.uploads.Upload(stream_of(resume_messages(created.name, 0, sample.data)))
    states = await asyncio.wait_for(watcher, 60)
    upload = (await api.uploads.GetUpload(pb.GetUploadRequest(name=created.name))).upload
    return upload, states


async def gone(env: Env, key: str) -> bool:
    """Whether `key` disappears within 5 s (the worker deletes staged bytes just after the state changes)."""
    async def deleted() -> bool:
        return await env.store.stat(key) is None

    try:
        return await eventually(deleted, f"{key} deleted", timeout=5, interval=0.1)
    except AssertionError:
        return False


@pytest.mark.parametrize("make", [csv_sample, jsonl_sample, parquet_sample, binary_sample],
                         ids=["csv", "jsonl", "parquet", "binary"])
async def test_each_format_becomes_a_ready_version(pipeline_env: Env, make: object) -> None:
    env = pipeline_env
    sample: Sample = make()  # type: ignore[operator]
    upload, states = await upload_and_watch(env.api, "formats", sample)
    assert states == [upload_pb2.UPLOAD_STATE_OPEN, upload_pb2.UPLOAD_STATE_STAGED, upload_pb2.UPLOAD_STATE_VALIDATING,
                      upload_pb2.UPLOAD_STATE_VALIDATED, upload_pb2.UPLOAD_STATE_PROMOTED], states
    version = (await env.api.datasets.GetVersion(dpb.GetVersionRequest(name=upload.version,
                                                                         view=dpb.VERSION_VIEW_FULL))).version
    assert version.state == version_pb2.VERSION_STATE_READY and version.number == 1
    # The canonical name is by uid, also once READY and numbered (AIP-122).
    assert upload.version == version.name == f"namespaces/{env.namespace}/datasets/formats/versions/{version.uid}"
    assert version.file_count == 1 and version.total_bytes == len(sample.data) and version.total_rows == sample.rows
    [file] = version.files
    assert (file.path, file.size_bytes, file.sha256) == (sample.path, len(sample.data), sample.sha256)
    assert common_pb2.FileFormat.Name(file.format) == f"FILE_FORMAT_{sample.format}"
    assert file.row_count == sample.rows
    assert tuple((c.name, c.type) for c in file.columns) == sample.columns
    assert file.report.bytes_read == len(sample.data) and not file.report.errors
    assert await gone(env, f"staging/{env.namespace}/{upload.uid}"), "the staging object is still there"
    dataset = (await env.api.datasets.GetDataset(dpb.GetDatasetRequest(
        name=f"namespaces/{env.namespace}/datasets/formats"))).dataset
    assert dataset.state == dataset_pb2.DATASET_STATE_ACTIVE and dataset.current_version_number == 1
    fresh = await env.store.stat(f"fresh/{env.namespace}/{dataset.uid}/objects/{sample.sha256}")
    assert fresh is not None and fresh.size == len(sample.data)


def _broken_csv() -> Sample:
    return Sample("bad.csv", b"a,b,c\n1,2,3\n4,5,6\n7,8\n9,10,11\n", "CSV", 0, ())


@pytest.mark.parametrize("sample, reason, code, line", [
    (_broken_csv(), "RAGGED_ROW", grpc.StatusCode.INVALID_ARGUMENT, 4),
    (Sample("bad.jsonl", b'{"a": 1}\n{"a": 2}\n{"a": \n{"a": 4}\n', "JSONL", 0, ()), "INVALID_JSON",
     grpc.StatusCode.INVALID_ARGUMENT, 3),
    (Sample("bad.parquet", parquet_sample().data[:3000], "PARQUET", 0, ()), "INVALID_PARQUET",
     grpc.StatusCode.INVALID_ARGUMENT, 0),
    (Sample("bad.txt", b"fine\nalso fine\n\xff\xfe\n", "TEXT", 0, ()), "INVALID_UTF8",
     grpc.StatusCode.INVALID_ARGUMENT, 3),
], ids=["ragged-csv", "broken-jsonl", "truncated-parquet", "not-utf8"])
async def test_invalid_files_fail_with_the_reason(pipeline_env: Env, sample: Sample, reason: str,
                                                  code: grpc.StatusCode, line: int) -> None:
    env = pipeline_env
    upload, states = await upload_and_watch(env.api, "invalid", sample)
    assert states[-1] == upload_pb2.UPLOAD_STATE_FAILED
    assert upload.failure.reason == reason and upload.failure.code == code.value[0]
    assert upload.failure.path == sample.path and not upload.failure.retryable
    if line:
        assert f"line {line}" in upload.failure.message
    assert not upload.version  # no version was made
    assert await gone(env, f"staging/{env.namespace}/{upload.uid}")  # nothing to retry, so nothing kept


async def test_sha256_mismatch_is_data_loss(pipeline_env: Env) -> None:
    env = pipeline_env
    sample = csv_sample(10)
    upload, states = await upload_and_watch(env.api, "sums", sample, declared_sha="0" * 64)
    assert states[-1] == upload_pb2.UPLOAD_STATE_FAILED
    assert upload.failure.reason == "CHECKSUM_MISMATCH"
    assert upload.failure.code == grpc.StatusCode.DATA_LOSS.value[0]


async def test_dataset_rules_and_schema_compatibility(pipeline_env: Env) -> None:
    env = pipeline_env
    rules = dataset_pb2.DatasetRules(allowed_formats=[common_pb2.FILE_FORMAT_CSV], required_columns=["id"],
                                     min_rows=5)
    await env.api.datasets.CreateDataset(dpb.CreateDatasetRequest(dataset_id="ruled",
                                                                  dataset=dataset_pb2.Dataset(rules=rules)))
    upload, _ = await upload_and_watch(env.api, "ruled", jsonl_sample())
    assert (upload.failure.reason, upload.failure.code) == ("FORMAT_NOT_ALLOWED",
                                                            grpc.StatusCode.FAILED_PRECONDITION.value[0])
    upload, _ = await upload_and_watch(env.api, "ruled", csv_sample(3))
    assert upload.failure.reason == "TOO_FEW_ROWS"
    first, _ = await upload_and_watch(env.api, "ruled", csv_sample(10, path="t.csv", extra_column=True))
    assert first.state == upload_pb2.UPLOAD_STATE_PROMOTED
    # The same path without the `extra` column: a removed column breaks the current version's schema.
    removed, _ = await upload_and_watch(env.api, "ruled", csv_sample(10, path="t.csv"))
    assert removed.failure.reason == "COLUMN_REMOVED" and "'extra'" in removed.failure.message
    # Added columns pass.
    again, _ = await upload_and_watch(env.api, "ruled", csv_sample(10, path="u.csv"))
    added, _ = await upload_and_watch(env.api, "ruled", csv_sample(10, path="u.csv", extra_column=True))
    assert again.state == added.state == upload_pb2.UPLOAD_STATE_PROMOTED


async def test_commit_adds_replaces_and_deletes_copy_on_write(pipeline_env: Env) -> None:
    env, api = pipeline_env, pipeline_env.api
    first = [csv_sample(20, path="a.csv"), jsonl_sample(path="b.jsonl"), binary_sample(path="c.bin")]
    uploads = [(await upload_and_watch(api, "cow", s, auto_commit=False))[0] for s in first]
    assert all(u.state == upload_pb2.UPLOAD_STATE_VALIDATED for u in uploads)
    parent = f"namespaces/{env.namespace}/datasets/cow"
    v1 = (await api.datasets.CommitVersion(dpb.CommitVersionRequest(
        parent=parent, uploads=[u.name for u in uploads], message="first", request_id="c1"))).version
    again = (await api.datasets.CommitVersion(dpb.CommitVersionRequest(
        parent=parent, uploads=[u.name for u in uploads], message="first", request_id="c1"))).version
    assert again.uid == v1.uid  # a retried commit is the same commit
    assert v1.state == version_pb2.VERSION_STATE_PENDING and v1.name == f"{parent}/versions/{v1.uid}"
    pending_name = v1.name
    v1 = await wait_version(api, v1.name)
    assert v1.state == version_pb2.VERSION_STATE_READY and v1.number == 1 and v1.file_count == 3
    assert v1.name == pending_name  # one name from the commit to READY and after
    replacement = (await upload_and_watch(api, "cow", csv_sample(30, path="a.csv"), auto_commit=False))[0]
    v2 = (await api.datasets.CommitVersion(dpb.CommitVersionRequest(
        parent=parent, base_version=v1.name, uploads=[replacement.name], delete_paths=["c.bin"],
        message="second"))).version
    v2 = await wait_version(api, v2.name)
    v2 = (await api.datasets.GetVersion(dpb.GetVersionRequest(name=v2.name, view=dpb.VERSION_VIEW_FULL))).version
    assert v2.number == 2 and v2.parent == v1.name
    assert [f.path for f in v2.files] == ["a.csv", "b.jsonl"]
    assert v2.files[0].row_count == 30 and v2.files[1].sha256 == first[1].sha256
    # Version 1 never changed.
    old = (await api.datasets.GetVersion(dpb.GetVersionRequest(name=f"{parent}/versions/1",
                                                                view=dpb.VERSION_VIEW_FULL))).version
    assert [f.path for f in old.files] == ["a.csv", "b.jsonl", "c.bin"] and old.files[0].row_count == 20
    latest = (await api.datasets.GetVersion(dpb.GetVersionRequest(name=f"{parent}/versions/latest"))).version
    assert latest.number == 2 and not latest.files  # the default view leaves the files out
    # Aliases in, the canonical name out.
    assert (old.name, latest.name) == (v1.name, v2.name)
    dataset = (await api.datasets.GetDataset(dpb.GetDatasetRequest(name=parent))).dataset
    assert dataset.current_version == v2.name
    listed = (await api.datasets.ListVersions(dpb.ListVersionsRequest(parent=parent))).versions
    assert [v.number for v in listed] == [2, 1] and not listed[0].files
    # The unchanged file is stored once: both versions point at the same content key.
    rows = await env.pool.fetch(
        """SELECT DISTINCT vf.object_key FROM version_files vf JOIN versions v ON v.id = vf.version_id
           JOIN datasets d ON d.id = v.dataset_id JOIN namespaces n ON n.id = d.namespace_id
           WHERE n.name = $1 AND vf.path = 'b.jsonl'""", env.namespace)
    assert len(rows) == 1


async def test_concurrent_commits_get_consecutive_numbers_and_conflicts_fail(pipeline_env: Env) -> None:
    env, api = pipeline_env, pipeline_env.api
    parent = f"namespaces/{env.namespace}/datasets/race"
    base = (await upload_and_watch(api, "race", csv_sample(5, path="base.csv")))[0]
    assert base.state == upload_pb2.UPLOAD_STATE_PROMOTED
    samples = [csv_sample(5 + i, path=f"p{i}.csv") for i in range(3)] + [csv_sample(9, path="same.csv"),
                                                                           csv_sample(11, path="same.csv")]
    ready = [(await upload_and_watch(api, "race", s, auto_commit=False))[0] for s in samples]

    async def commit(upload: upload_pb2.Upload) -> version_pb2.Version:
        response = await api.datasets.CommitVersion(dpb.CommitVersionRequest(
            parent=parent, base_version=f"{parent}/versions/1", uploads=[upload.name]))
        return await wait_version(api, response.version.name)

    results = await asyncio.gather(*(commit(u) for u in ready[:3]))
    assert sorted(v.number for v in results) == [2, 3, 4], [(v.state, v.failure) for v in results]
    # Two commits from the same base change the same path: one lands, the other fails.
    outcome = await asyncio.gather(*(commit(u) for u in ready[3:]), return_exceptions=True)
    landed = [o for o in outcome if isinstance(o, version_pb2.Version) and o.state == version_pb2.VERSION_STATE_READY]
    refused = [o for o in outcome if o not in landed]
    assert len(landed) == 1 and landed[0].number == 5 and len(refused) == 1
    loser = refused[0]
    if isinstance(loser, aio.AioRpcError):  # refused at commit time: the winner was already READY
        assert loser.code() == grpc.StatusCode.FAILED_PRECONDITION and error_info(loser)[0] == "BASE_MOVED"
    else:  # refused at promotion: the version FAILED
        assert isinstance(loser, version_pb2.Version) and loser.state == version_pb2.VERSION_STATE_FAILED
        assert loser.failure.reason == "BASE_MOVED"
        assert loser.failure.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    numbers = [v.number for v in (await api.datasets.ListVersions(dpb.ListVersionsRequest(parent=parent))).versions
               if v.number]
    assert sorted(numbers) == [1, 2, 3, 4, 5]  # gapless
