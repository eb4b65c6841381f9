"""Bad input to CommitVersion, and reads of a version that is not READY: a precise status and reason, the
good case beside the bad one, and nothing left behind (no version, no upload bound, no bytes moved).

The server runs on the idle stack: no worker moves an upload or a version on behind the test's back, so the
states compared before and after are exact. Where a test needs a READY version, it runs the jobs itself,
in-process, on the same database and store.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc import aio
from quarry.v1 import dataset_service_pb2 as dpb
from quarry.v1 import upload_pb2, version_pb2
from quarry.v1 import upload_service_pb2 as pb

from server.domain.services import Services
from tests.conftest import Env
from tests.inprocess import in_process
from tests.samples import csv_sample
from tests.support import error_info, field_violations
from tests.uploading import create_request, upload_bytes

PENDING = version_pb2.VERSION_STATE_PENDING
READY = version_pb2.VERSION_STATE_READY


@pytest.fixture
async def jobs(idle_envs: dict[str, dict[str, str]]) -> AsyncIterator[Services]:
    """The worker's jobs, run by hand on the idle stack."""
    async with in_process(idle_envs["file"]) as services:
        yield services


async def fails(call: Any, code: grpc.StatusCode, reason: str) -> aio.AioRpcError:
    with pytest.raises(aio.AioRpcError) as raised:
        await call
    assert (raised.value.code(), error_info(raised.value)[0]) == (code, reason), raised.value
    return raised.value


async def everything(env: Env) -> dict[str, object]:
    """What a refused commit must not change: versions, uploads (state, version), the bytes."""
    uploads = await env.pool.fetch(
        """SELECT u.id, u.state, u.version_id FROM uploads u JOIN namespaces n ON n.id = u.namespace_id
           WHERE n.name = $1 ORDER BY u.id""", env.namespace)
    versions = await env.pool.fetch(
        """SELECT v.id, v.state FROM versions v JOIN datasets d ON d.id = v.dataset_id
           JOIN namespaces n ON n.id = d.namespace_id WHERE n.name = $1 ORDER BY v.id""", env.namespace)
    fresh = [o.key async for o in env.store.list_objects(f"fresh/{env.namespace}/")]
    return {**await env.leftovers(), "uploads": [tuple(r) for r in uploads],
            "version_rows": [tuple(r) for r in versions], "fresh": sorted(fresh)}


def commit(env: Env, dataset: str, uploads: list[str], delete: list[str] | None = None, base: str = "") -> Any:
    return env.api.datasets.CommitVersion(dpb.CommitVersionRequest(
        parent=f"{env.api.parent}/datasets/{dataset}", uploads=uploads, delete_paths=delete or [],
        base_version=base))


async def staged(env: Env, dataset: str, path: str, rows: int = 5) -> upload_pb2.Upload:
    sample = csv_sample(rows, path=path)
    upload = (await upload_bytes(env.api, dataset, path, sample.data)).upload
    assert upload.state == upload_pb2.UPLOAD_STATE_STAGED
    return upload


async def make_ready(jobs: Services, env: Env, version: version_pb2.Version) -> version_pb2.Version:
    """What the worker would do: validate the version's uploads, then promote it."""
    for upload in await env.pool.fetch("SELECT id FROM uploads WHERE version_id = $1", uuid.UUID(version.uid)):
        await jobs.pipeline.validate_upload(upload["id"])
    await jobs.pipeline.promote_version(uuid.UUID(version.uid))
    done = (await env.api.datasets.GetVersion(dpb.GetVersionRequest(name=version.name,
                                                                    view=dpb.VERSION_VIEW_FULL))).version
    assert done.state == READY, done.failure
    return done  # type: ignore[no-any-return]


async def test_the_shape_of_a_commit_is_checked_first(idle_env: Env) -> None:
    env = idle_env
    a = await staged(env, "shape", "a.csv")
    before = await everything(env)
    error = await fails(commit(env, "shape", []), grpc.StatusCode.INVALID_ARGUMENT, "EMPTY_COMMIT")
    assert field_violations(error) == ["uploads"]
    error = await fails(commit(env, "shape", [a.name, a.name]), grpc.StatusCode.INVALID_ARGUMENT, "DUPLICATE_UPLOAD")
    assert field_violations(error) == ["uploads"]
    error = await fails(commit(env, "shape", [a.name], ["x.csv", "x.csv"]), grpc.StatusCode.INVALID_ARGUMENT,
                        "DUPLICATE_PATH")
    assert field_violations(error) == ["delete_paths"]
    error = await fails(commit(env, "shape", [], ["../x.csv"]), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_PATH")
    assert field_violations(error) == ["delete_paths[0]"]
    await fails(commit(env, "absent", [a.name]), grpc.StatusCode.NOT_FOUND, "DATASET_NOT_FOUND")
    assert await everything(env) == before
    # The same upload, committed properly: a PENDING version that holds it.
    version = (await commit(env, "shape", [a.name])).version
    assert version.state == PENDING
    after = await everything(env)
    assert after["version_rows"] == [(uuid.UUID(version.uid), "PENDING")]
    assert after["uploads"] == [(uuid.UUID(a.uid), "STAGED", uuid.UUID(version.uid))]


async def test_two_uploads_of_one_path_or_a_path_added_and_deleted(idle_env: Env, jobs: Services) -> None:
    env = idle_env
    base = await staged(env, "paths", "keep.csv")
    v1 = await make_ready(jobs, env, (await commit(env, "paths", [base.name])).version)
    first, second = await asyncio.gather(staged(env, "paths", "same.csv"), staged(env, "paths", "same.csv", 7))
    before = await everything(env)
    error = await fails(commit(env, "paths", [first.name, second.name]), grpc.StatusCode.INVALID_ARGUMENT,
                        "DUPLICATE_PATH")
    assert field_violations(error) == ["uploads"]
    error = await fails(commit(env, "paths", [first.name], ["same.csv"]), grpc.StatusCode.INVALID_ARGUMENT,
                        "DUPLICATE_PATH")
    assert field_violations(error) == ["delete_paths"]
    error = await fails(commit(env, "paths", [first.name], ["not-there.csv"], v1.name),
                        grpc.StatusCode.FAILED_PRECONDITION, "PATH_NOT_FOUND")
    assert error_info(error)[1] == {"path": "not-there.csv"}
    assert await everything(env) == before
    # One of them, deleting a path that is there: version 2 holds only it.
    v2 = await make_ready(jobs, env, (await commit(env, "paths", [first.name], ["keep.csv"], v1.name)).version)
    assert (v2.number, [f.path for f in v2.files]) == (2, ["same.csv"])


async def test_a_path_to_delete_in_a_dataset_without_a_version(idle_env: Env) -> None:
    env = idle_env
    a = await staged(env, "empty", "a.csv")
    before = await everything(env)
    error = await fails(commit(env, "empty", [a.name], ["gone.csv"]), grpc.StatusCode.FAILED_PRECONDITION,
                        "PATH_NOT_FOUND")
    assert error_info(error)[1] == {"path": "gone.csv"}
    assert await everything(env) == before
    assert (await commit(env, "empty", [a.name])).version.state == PENDING


async def test_uploads_that_cannot_join_this_commit(idle_env: Env) -> None:
    env = idle_env
    mine, theirs = await asyncio.gather(staged(env, "mine", "m.csv"), staged(env, "theirs", "t.csv"))
    opened = (await env.api.uploads.CreateUpload(create_request("mine", "open.csv", 10))).upload
    cancelled = (await env.api.uploads.CreateUpload(create_request("mine", "cancelled.csv", 10))).upload
    await env.api.uploads.CancelUpload(pb.CancelUploadRequest(name=cancelled.name))
    before = await everything(env)
    error = await fails(commit(env, "mine", [mine.name, theirs.name]), grpc.StatusCode.FAILED_PRECONDITION,
                        "UPLOAD_OTHER_DATASET")
    assert theirs.name in (error.details() or "")
    error = await fails(commit(env, "mine", [opened.name]), grpc.StatusCode.FAILED_PRECONDITION,
                        "UPLOAD_NOT_COMMITTABLE")
    assert error_info(error)[1] == {"state": "OPEN"}
    error = await fails(commit(env, "mine", [mine.name, cancelled.name]), grpc.StatusCode.FAILED_PRECONDITION,
                        "UPLOAD_NOT_COMMITTABLE")
    assert error_info(error)[1] == {"state": "CANCELLED"}
    unknown = f"{env.api.parent}/uploads/{uuid.uuid4()}"
    await fails(commit(env, "mine", [unknown]), grpc.StatusCode.NOT_FOUND, "UPLOAD_NOT_FOUND")
    assert await everything(env) == before
    assert (await commit(env, "mine", [mine.name])).version.state == PENDING


async def test_an_upload_joins_one_version_only(idle_env: Env) -> None:
    env = idle_env
    upload = await staged(env, "once", "o.csv")
    # Two commits of the same upload at once: the upload's row lock lets one in; the other is refused.
    outcome = await asyncio.gather(commit(env, "once", [upload.name]), commit(env, "once", [upload.name]),
                                   return_exceptions=True)
    refused = [o for o in outcome if isinstance(o, aio.AioRpcError)]
    [accepted] = [o for o in outcome if not isinstance(o, aio.AioRpcError)]
    assert [(e.code(), error_info(e)[0]) for e in refused] == [(grpc.StatusCode.FAILED_PRECONDITION,
                                                               "UPLOAD_IN_OTHER_VERSION")]
    before = await everything(env)
    assert before["version_rows"] == [(uuid.UUID(accepted.version.uid), "PENDING")]
    await fails(commit(env, "once", [upload.name]), grpc.StatusCode.FAILED_PRECONDITION, "UPLOAD_IN_OTHER_VERSION")
    assert await everything(env) == before


async def test_a_version_not_ready_has_no_files_to_read(idle_env: Env, jobs: Services) -> None:
    env = idle_env
    upload = await staged(env, "early", "e.csv")
    version = (await commit(env, "early", [upload.name])).version
    before = await everything(env)
    name = version.name  # by uid: a version has no number before it is READY
    for call in (env.api.datasets.PreviewFile(dpb.PreviewFileRequest(version=name, path="e.csv")),
                 env.api.datasets.GetFileStats(dpb.GetFileStatsRequest(version=name, path="e.csv")),
                 env.api.datasets.GetDownloadUrl(dpb.GetDownloadUrlRequest(version=name, path="e.csv")),
                 read(env, name, "e.csv")):
        error = await fails(call, grpc.StatusCode.FAILED_PRECONDITION, "VERSION_NOT_READY")
        assert error_info(error)[1] == {"state": "PENDING"}
    assert await everything(env) == before
    # Once READY, the same reads answer.
    ready = await make_ready(jobs, env, version)
    assert b"".join(m.data for m in await read(env, ready.name, "e.csv")) == csv_sample(5, path="e.csv").data
    stats = await env.api.datasets.GetFileStats(dpb.GetFileStatsRequest(version=name, path="e.csv"))
    assert stats.row_count == 5


async def read(env: Env, version: str, path: str) -> list[Any]:
    return [m async for m in env.api.datasets.ReadFile(dpb.ReadFileRequest(version=version, path=path))]
