"""WatchVersion: a commit followed to READY or FAILED without polling, under one canonical name.

On the idle stack no worker moves anything: the test runs the jobs by hand, in its own process, so every
state the version passes through is one the watch must report (through Postgres NOTIFY, as across replicas).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio
from quarry.v1 import dataset_service_pb2 as dpb
from quarry.v1 import version_pb2

from server.domain.services import Services
from tests.conftest import Env
from tests.inprocess import in_process
from tests.samples import csv_sample
from tests.support import error_info
from tests.uploading import upload_bytes

ORDER = [version_pb2.VERSION_STATE_PENDING, version_pb2.VERSION_STATE_VALIDATING,
         version_pb2.VERSION_STATE_PROMOTING, version_pb2.VERSION_STATE_READY]


@pytest.fixture
async def jobs(idle_envs: dict[str, dict[str, str]]) -> AsyncIterator[Services]:
    """The worker's jobs, run by hand on the idle stack."""
    async with in_process(idle_envs["file"]) as services:
        yield services


async def committed(env: Env, dataset: str, data: bytes, path: str = "a.csv") -> version_pb2.Version:
    upload = (await upload_bytes(env.api, dataset, path, data)).upload
    return (await env.api.datasets.CommitVersion(dpb.CommitVersionRequest(
        parent=f"{env.api.parent}/datasets/{dataset}", uploads=[upload.name]))).version


async def run_jobs(jobs: Services, env: Env, version: version_pb2.Version) -> None:
    """What the worker would do: validate the version's uploads, then promote it."""
    for row in await env.pool.fetch("SELECT id FROM uploads WHERE version_id = $1", uuid.UUID(version.uid)):
        await jobs.pipeline.validate_upload(row["id"])
    await jobs.pipeline.promote_version(uuid.UUID(version.uid))


async def test_a_commit_is_followed_to_ready_under_one_name(idle_env: Env, jobs: Services) -> None:
    env = idle_env
    version = await committed(env, "watched", csv_sample(5).data)
    canonical = f"{env.api.parent}/datasets/watched/versions/{version.uid}"
    assert version.name == canonical and version.state == version_pb2.VERSION_STATE_PENDING
    stream = env.api.datasets.WatchVersion(dpb.WatchVersionRequest(name=version.name), timeout=60)
    seen = [await stream.read()]  # the version as it is when the watch starts: from here no change is missed
    assert seen[0].version.state == version_pb2.VERSION_STATE_PENDING and seen[0].version.number == 0
    jobs_done = asyncio.ensure_future(run_jobs(jobs, env, version))
    async for message in stream:
        seen.append(message)
    await jobs_done
    states = [m.version.state for m in seen]
    assert states == [s for s in ORDER if s in states] and states[-1] == version_pb2.VERSION_STATE_READY, states
    assert len(states) >= 3  # PROMOTING at least, between PENDING and READY
    assert {m.version.name for m in seen} == {canonical}
    last = seen[-1].version
    assert last.number == 1 and last.file_count == 1 and not last.files  # GetVersion has the files


@pytest.mark.parametrize("alias", ["1", "latest", "uid"])
async def test_a_ready_version_is_answered_once_by_any_alias(idle_env: Env, jobs: Services, alias: str) -> None:
    env = idle_env
    version = await committed(env, "ready", csv_sample(3).data)
    await run_jobs(jobs, env, version)
    ident = version.uid if alias == "uid" else alias
    messages = [m async for m in env.api.datasets.WatchVersion(dpb.WatchVersionRequest(
        name=f"{env.api.parent}/datasets/ready/versions/{ident}"), timeout=30)]
    assert [(m.version.name, m.version.state) for m in messages] == [(version.name, version_pb2.VERSION_STATE_READY)]


async def test_a_failing_version_ends_the_watch_with_its_failure(idle_env: Env, jobs: Services) -> None:
    env = idle_env
    version = await committed(env, "broken", b"a,b\n1,2\n3\n", path="ragged.csv")
    watch = env.api.datasets.WatchVersion(dpb.WatchVersionRequest(name=version.name), timeout=60)
    first = await watch.read()
    assert first.version.state == version_pb2.VERSION_STATE_PENDING
    await run_jobs(jobs, env, version)
    rest = [m async for m in watch]
    assert rest[-1].version.state == version_pb2.VERSION_STATE_FAILED
    assert rest[-1].version.failure.reason == "RAGGED_ROW" and rest[-1].version.number == 0


@pytest.mark.parametrize(("name", "code", "reason"), [
    ("versions/1", grpc.StatusCode.INVALID_ARGUMENT, "INVALID_NAME"),
    ("{parent}/datasets/ready/versions/0", grpc.StatusCode.INVALID_ARGUMENT, "INVALID_NAME"),
    ("{parent}/datasets/nothing/versions/1", grpc.StatusCode.NOT_FOUND, "DATASET_NOT_FOUND"),
    ("{parent}/datasets/ready/versions/" + str(uuid.UUID(int=7)), grpc.StatusCode.NOT_FOUND, "VERSION_NOT_FOUND"),
    ("namespaces/someone-else/datasets/ready/versions/1", grpc.StatusCode.PERMISSION_DENIED, "NAMESPACE_NOT_GRANTED"),
])
async def test_bad_names_are_refused(idle_env: Env, name: str, code: grpc.StatusCode, reason: str) -> None:
    env = idle_env
    await env.api.datasets.CreateDataset(dpb.CreateDatasetRequest(dataset_id="ready"))
    with pytest.raises(aio.AioRpcError) as raised:
        async for _ in env.api.datasets.WatchVersion(dpb.WatchVersionRequest(
                name=name.format(parent=env.api.parent)), timeout=30):
            pass
    assert (raised.value.code(), error_info(raised.value)[0]) == (code, reason)
