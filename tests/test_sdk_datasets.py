"""The SDK's dataset and version methods against the real server and worker, sync and async."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import grpc
import pytest
import quarry
from quarry.v1 import (
    capabilities_service_pb2,
    dataset_pb2,
    dataset_service_pb2,
    upload_pb2,
    upload_service_pb2,
    version_pb2,
)

from tests.conftest import Env


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


# The raw client-streaming Upload is `upload_stream`: `upload_file` and `upload_dir` are the usual way in.
RENAMED = {"Upload": "upload_stream"}


@pytest.mark.parametrize("client_class", [quarry.Client, quarry.AsyncClient])
def test_every_rpc_of_the_contract_has_a_method(client_class: type) -> None:
    services = [capabilities_service_pb2, dataset_service_pb2, upload_service_pb2]
    rpcs = [method.name for module in services for service in module.DESCRIPTOR.services_by_name.values()
            for method in service.methods]
    assert len(rpcs) == 29
    for rpc in rpcs:
        method = getattr(client_class, RENAMED.get(rpc, snake(rpc)), None)
        assert callable(method), f"{client_class.__name__} has no method for {rpc}"
        assert method.__doc__, f"{client_class.__name__}.{method.__name__} has no docstring"
    for helper in ("upload_file", "upload_dir", "download", "preview", "close"):
        assert callable(getattr(client_class, helper))


def test_public_api_is_exactly_all() -> None:
    public = {name for name in vars(quarry) if not name.startswith("_")} - {"cli", "v1", "fsspec"}  # modules
    assert public == set(quarry.__all__) - {"__version__"}


def make_client(env: Env, tmp_path: Path) -> quarry.Client:
    return quarry.Client(env.server.address, namespace=env.namespace, token=env.api.token, cache_dir=tmp_path)


async def test_dataset_methods(env: Env, tmp_path: Path) -> None:
    with make_client(env, tmp_path) as client:
        created = client.create_dataset("sales", description="Sales", labels={"team": "bi"},
                                        rules=dataset_pb2.DatasetRules(min_rows=1), request_id="once")
        assert client.create_dataset("sales", request_id="once").uid == created.uid  # a replay is not a duplicate
        assert created.state == dataset_pb2.DATASET_STATE_DRAFT and created.rules.min_rows == 1
        assert client.get_dataset("sales").etag == created.etag
        assert client.get_dataset(created.name).uid == created.uid
        for name in ("a1", "a2", "a3"):
            client.create_dataset(name)
        assert [d.name.rsplit("/", 1)[-1] for d in client.list_datasets(page_size=2)] == ["a1", "a2", "a3", "sales"]
        assert [d.name.rsplit("/", 1)[-1] for d in client.list_datasets(filter='labels.team = "bi"')] == ["sales"]
        updated = client.update_dataset("sales", description="All sales", etag=created.etag)
        assert updated.description == "All sales" and updated.labels["team"] == "bi"
        with pytest.raises(quarry.Aborted):  # a stale etag; not retried, as a repeat could never succeed
            client.update_dataset("sales", description="x", etag=created.etag)
        with pytest.raises(quarry.UsageError):
            client.update_dataset("sales")
        deleted = client.delete_dataset("sales")
        assert deleted.state == dataset_pb2.DATASET_STATE_DELETED
        with pytest.raises(quarry.NotFound):
            client.get_dataset("sales")
        with pytest.raises(quarry.AlreadyExists):
            client.create_dataset("a1")
        with pytest.raises(quarry.InvalidArgument) as bad:
            client.create_dataset("Not A Name")
        assert bad.value.code is grpc.StatusCode.INVALID_ARGUMENT and bad.value.reason


async def test_async_dataset_methods(env: Env, tmp_path: Path) -> None:
    async with quarry.AsyncClient(env.server.address, namespace=env.namespace, token=env.api.token,
                                  cache_dir=tmp_path) as client:
        created = await client.create_dataset("events", labels={"k": "v"})
        assert (await client.get_dataset("events")).uid == created.uid
        assert [d.uid async for d in client.list_datasets()] == [created.uid]
        assert (await client.update_dataset("events", labels={"k": "w"})).labels["k"] == "w"
        assert (await client.delete_dataset("events")).state == dataset_pb2.DATASET_STATE_DELETED
        with pytest.raises(quarry.NotFound):
            await client.get_dataset("events")


async def test_versions_commit_and_wait(pipeline_env: Env, tmp_path: Path) -> None:
    env = pipeline_env
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text("id,v\n1,a\n2,b\n")
    second.write_text("id,v\n3,c\n")
    with make_client(env, tmp_path) as client:
        promoted = client.upload_file(first, "tab", "a.csv", wait=True, commit_message="one", wait_timeout=60)
        assert promoted.upload.state == upload_pb2.UPLOAD_STATE_PROMOTED
        first_version = client.get_version("tab", 1)
        assert promoted.upload.version == first_version.name == (
            f"namespaces/{env.namespace}/datasets/tab/versions/{first_version.uid}")
        staged = client.upload_file(second, "tab", "b.csv")
        pending = client.commit_version("tab", [staged.upload.uid], message="two")
        assert pending.state in (version_pb2.VERSION_STATE_PENDING, version_pb2.VERSION_STATE_VALIDATING,
                                 version_pb2.VERSION_STATE_PROMOTING, version_pb2.VERSION_STATE_READY)
        ready = client._wait_version(pending, 60)
        assert ready.state == version_pb2.VERSION_STATE_READY and ready.number == 2 and ready.name == pending.name
        assert [(v.number, v.message) for v in client.list_versions("tab", page_size=1)] == [(2, "two"), (1, "one")]
        assert not client.get_version("tab").files  # the basic view: no file list
        latest = client.get_version("tab", view="full")
        assert [f.path for f in latest.files] == ["a.csv", "b.csv"]
        assert latest.files[0].sha256 == hashlib.sha256(first.read_bytes()).hexdigest()
        assert client.get_version("tab", 1).file_count == 1
        with pytest.raises(quarry.NotFound):
            client.get_version("tab", 9)


def test_a_version_is_followed_with_watch_version(idle_env: Env, tmp_path: Path) -> None:
    # The idle stack has no worker: the version stays PENDING, so the wait runs out, naming the version.
    source = tmp_path / "a.csv"
    source.write_text("id\n1\n")
    with make_client(idle_env, tmp_path) as client:
        staged = client.upload_file(source, "idle")
        pending = client.commit_version("idle", [staged.upload.uid])
        seen = []
        with pytest.raises(quarry.DeadlineExceeded):
            for version in client.watch_version(pending.name, timeout=1):
                seen.append((version.name, version.state))
        assert seen == [(pending.name, version_pb2.VERSION_STATE_PENDING)]
        with pytest.raises(quarry.DeadlineExceeded, match=f"{re.escape(pending.name)} did not become READY"):
            client._wait_version(pending, 0.5)


async def test_async_upload_wait_and_failure(pipeline_env: Env, tmp_path: Path) -> None:
    env = pipeline_env
    good, bad = tmp_path / "g.jsonl", tmp_path / "bad.jsonl"
    good.write_text('{"a": 1}\n{"a": 2}\n')
    bad.write_text('{"a": 1}\nnot json\n')
    async with quarry.AsyncClient(env.server.address, namespace=env.namespace, token=env.api.token,
                                  cache_dir=tmp_path) as client:
        result = await client.upload_file(good, "ev", wait=True, wait_timeout=60)
        assert result.upload.state == upload_pb2.UPLOAD_STATE_PROMOTED
        assert [v.number async for v in client.list_versions("ev")] == [1]
        with pytest.raises(quarry.UploadFailed) as failed:
            await client.upload_file(bad, "ev", wait=True, wait_timeout=60)
        assert failed.value.upload.failure.reason == "INVALID_JSON"
        states = [u.state async for u in client.watch_upload(failed.value.upload.uid, timeout=10)]
        assert states == [upload_pb2.UPLOAD_STATE_FAILED]
        with pytest.raises(quarry.FailedPrecondition) as refused:
            await client.retry_upload(failed.value.upload.uid)
        assert refused.value.reason == "NOT_RETRYABLE"
        listed = [u.path async for u in client.list_uploads(state="failed")]
        assert listed == ["bad.jsonl"]


async def test_a_diff_of_many_pages_is_one_answer(pipeline_env: Env, tmp_path: Path) -> None:
    env = pipeline_env
    root = tmp_path / "dir"
    root.mkdir()
    for index in range(4):
        (root / f"f{index}.txt").write_text(f"one {index}\n")
    async with quarry.AsyncClient(env.server.address, namespace=env.namespace, token=env.api.token,
                                  cache_dir=tmp_path / "c") as client:
        await client.upload_dir(root, "paged", wait=True, wait_timeout=60)
        for index in (1, 3):
            (root / f"f{index}.txt").write_text(f"two {index}\n")
        (root / "g.txt").write_text("new\n")
        await client.upload_dir(root, "paged", wait=True, wait_timeout=60)
        one_call = await client.diff_versions("paged", 1, 2)
        assert [c.path for c in one_call.changes] == ["f1.txt", "f3.txt", "g.txt"] and one_call.unchanged_count == 2
        paged = await client.diff_versions("paged", 1, 2, page_size=1)  # three calls, one answer
        assert paged == one_call and not paged.next_page_token
    with make_client(env, tmp_path) as sync_client:
        assert sync_client.diff_versions("paged", 1, 2, page_size=2) == one_call


async def test_async_directory_upload(pipeline_env: Env, tmp_path: Path) -> None:
    env = pipeline_env
    root = tmp_path / "dir"
    root.mkdir()
    for index in range(5):
        (root / f"f{index}.csv").write_text(f"x\n{index}\n")
    (root / "skip.tmp").write_text("no")
    async with quarry.AsyncClient(env.server.address, namespace=env.namespace, token=env.api.token,
                                  cache_dir=tmp_path / "c") as client:
        result = await client.upload_dir(root, "many", ignore=["*.tmp"], message="five", wait=True, wait_timeout=60)
        assert result.version.state == version_pb2.VERSION_STATE_READY and result.version.file_count == 5
        assert result.ignored == ["skip.tmp"] and result.version.message == "five"


async def test_reads_of_versions(pipeline_env: Env, tmp_path: Path) -> None:
    """Diff, preview, stats, ReadFile and download URLs."""
    env = pipeline_env
    first, second = tmp_path / "t.csv", tmp_path / "t2.csv"
    first.write_text("id,v\n1,a\n2,b\n")
    second.write_text("id,v,w\n1,a,x\n2,b,y\n3,c,z\n")
    with make_client(env, tmp_path) as client:
        client.upload_file(first, "tab", "t.csv", wait=True, wait_timeout=60)
        client.upload_file(second, "tab", "t.csv", wait=True, wait_timeout=60)
        diff = client.diff_versions("tab", 1, 2)
        [change] = diff.changes
        assert change.path == "t.csv" and [c.name for c in change.schema_change.added] == ["w"]
        assert diff.unchanged_count == 0
        table = client.preview("tab", "t.csv", rows=2)
        assert table.to_pydict() == {"id": [1, 2], "v": ["a", "b"], "w": ["x", "y"]}
        assert client.get_file_stats("tab", "t.csv").row_count == 3
        out = tmp_path / "copy.csv"
        result = client.download("tab", "t.csv", out, version=1)
        assert out.read_bytes() == first.read_bytes()
        assert result.sha256 == hashlib.sha256(first.read_bytes()).hexdigest()
        chunks = b"".join(m.data for m in client.read_file("tab", "t.csv", offset=1, limit=3))
        assert chunks == second.read_bytes()[1:4]
        on_s3 = env.server.storage_kind == "s3"
        assert client.get_capabilities().download_urls == on_s3
        if on_s3:
            assert client.get_download_url("tab", "t.csv").url.startswith("http")
        else:
            with pytest.raises(quarry.Unimplemented) as unsupported:
                client.get_download_url("tab", "t.csv")
            assert unsupported.value.reason == "DOWNLOAD_URL_UNSUPPORTED"
