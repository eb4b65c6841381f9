"""Servers and workers killed (-9) mid-flight and started again.

- The server dies under an SDK upload half sent, and is back 3 s later: the upload resumes from the parts
  committed and ends READY with the file's sha256.
- A worker dies in the middle of validating a large table, and again in the middle of promoting a version of
  many files: another worker takes the job over once the dead one's heartbeat lapses, and each version is
  READY, once, with every file's sha256; nothing is left behind.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from quarry.v1 import dataset_service_pb2 as dpb
from quarry.v1 import upload_pb2, version_pb2
from quarry.v1 import upload_service_pb2 as pb

from tests.faults.cluster import Cluster, MiB, full_version, read_back_sha256, ready_sha256, write_random
from tests.samples import csv_sample
from tests.support import Api, upload_blocking
from tests.uploading import create_request, resume_messages

EMPTY = {"uploads": {}, "versions": 0, "staged": 0, "multipart": 0, "unreferenced": 0}


@pytest.mark.timeout(600)
async def test_a_server_killed_mid_upload(cluster: Cluster, tmp_path: Path) -> None:
    server = cluster.start_server()
    cluster.start_worker()
    path = tmp_path / "big.bin"
    size = 6 * 16 * MiB + 99
    sha = write_random(path, size)
    killed = asyncio.Event()

    def progress(done: int, _: int) -> None:
        if done >= size // 2 and not killed.is_set():
            server.process.kill()
            killed.set()

    namespace = "server-killed"
    async with cluster.client(namespace) as client:
        uploading = asyncio.ensure_future(client.upload_file(path, "restart", wait=True, progress=progress))
        await asyncio.wait_for(killed.wait(), 120)
        await asyncio.sleep(3)  # the outage itself
        assert not uploading.done(), uploading
        await asyncio.to_thread(cluster.restart_server, server)
        back = time.monotonic()
        result = await asyncio.wait_for(uploading, 300)
    assert result.upload.state == upload_pb2.UPLOAD_STATE_PROMOTED and result.sha256 == sha
    api = cluster.api(namespace=namespace)
    try:
        assert await ready_sha256(api, result.upload) == sha
        assert await read_back_sha256(api, result.upload) == sha
    finally:
        await api.channel.close()
    assert await cluster.wait_no_leftovers(namespace) == EMPTY
    ready = time.monotonic() - back
    print(f"\nserver killed half-way through {size / MiB:.0f} MiB, back 3 s later; READY {ready:.1f} s after it was "
          f"back ({result.streams} streams, {result.bytes_sent / MiB:.0f} MiB sent)")


async def _wait_state(api: Api, name: str, wanted: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while (await api.uploads.GetUpload(pb.GetUploadRequest(name=name))).upload.state != wanted:
        assert time.monotonic() < deadline, f"{name} never reached {wanted}"
        await asyncio.sleep(0.02)


async def _wait_version(api: Api, name: str, wanted: set[int], timeout: float = 180) -> version_pb2.Version:
    deadline = time.monotonic() + timeout
    while True:
        version = (await full_version(api, name))
        if version.state in wanted:
            return version
        assert time.monotonic() < deadline, f"{name} never reached {wanted}: {version.state}"
        await asyncio.sleep(0.01)


@pytest.mark.timeout(600)
async def test_workers_killed_mid_validation_and_mid_promotion(cluster: Cluster, tmp_path: Path) -> None:
    server = cluster.start_server()
    worker = cluster.start_worker("worker1")
    namespace = "workers-killed"
    api = cluster.api(namespace=namespace)
    try:
        # Mid-validation: a table large enough that validating it takes a while.
        table = csv_sample(2_000_000, path="big.csv")
        created = (await api.uploads.CreateUpload(create_request("tables", table.path, len(table.data),
                                                                 table.sha256, auto_commit=True))).upload
        await upload_blocking(server.address, namespace, resume_messages(created.name, 0, table.data, chunk=4 * MiB),
                              token=api.token)
        await _wait_state(api, created.name, upload_pb2.UPLOAD_STATE_VALIDATING)
        worker.process.kill()
        killed = time.monotonic()
        worker = cluster.start_worker("worker2")
        await _wait_state(api, created.name, upload_pb2.UPLOAD_STATE_PROMOTED)
        validated_in = time.monotonic() - killed
        upload = (await api.uploads.GetUpload(pb.GetUploadRequest(name=created.name))).upload
        assert await ready_sha256(api, upload) == table.sha256

        # Mid-promotion: one version of 24 files.
        shas = {}
        names = []
        for i in range(24):
            path = tmp_path / f"f{i:02}.bin"
            shas[path.name] = write_random(path, 2 * MiB + i)
            opened = (await api.uploads.CreateUpload(create_request("many", path.name, path.stat().st_size,
                                                                    shas[path.name]))).upload
            await upload_blocking(server.address, namespace, resume_messages(opened.name, 0, path.read_bytes()),
                                  token=api.token)
            names.append(opened.name)
        for name in names:
            await _wait_state(api, name, upload_pb2.UPLOAD_STATE_VALIDATED)
        version = (await api.datasets.CommitVersion(dpb.CommitVersionRequest(
            parent=f"namespaces/{namespace}/datasets/many", uploads=names))).version
        await _wait_version(api, version.name, {version_pb2.VERSION_STATE_PROMOTING, version_pb2.VERSION_STATE_READY})
        caught_promoting = (await full_version(api, version.name)).state
        worker.process.kill()
        killed = time.monotonic()
        cluster.start_worker("worker3")
        done = await _wait_version(api, version.name, {version_pb2.VERSION_STATE_READY,
                                                       version_pb2.VERSION_STATE_FAILED})
        promoted_in = time.monotonic() - killed
        assert done.state == version_pb2.VERSION_STATE_READY and done.number == 1 and done.file_count == 24
        assert {f.path: f.sha256 for f in done.files} == shas
    finally:
        await api.channel.close()
    assert await cluster.wait_no_leftovers(namespace) == EMPTY
    print(f"\nworker killed mid-validation: READY {validated_in:.1f} s later through another worker; killed "
          f"{'mid-promotion' if caught_promoting == version_pb2.VERSION_STATE_PROMOTING else 'as promotion ended'}"
          f": READY {promoted_in:.1f} s later")
