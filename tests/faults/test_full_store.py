"""The local store fills up: a real tmpfs of 80 MiB, mounted for the test, 56 MiB of it taken by a filler.

On tmpfs a write that does not fit is cut short without an error (the issue's "4 MiB of an 8 MiB write"),
then the next one fails with ENOSPC. A plain client's upload is refused with UNAVAILABLE (STORE_FULL) and
keeps the whole parts it had; health says `object-store` NOT_SERVING (free space under QUARRY_MIN_FREE_BYTES);
an SDK upload started meanwhile keeps trying. Once the filler goes, both finish: READY, with the sha256 of
what the clients sent (never the zeros a short write would have left), and nothing left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from quarry.v1 import upload_pb2
from quarry.v1 import upload_service_pb2 as pb

from tests.faults.cluster import Cluster, MiB, full_version, read_back_sha256, ready_sha256, write_random
from tests.support import error_info, metric_total, upload_blocking, wait_metric
from tests.test_server import NOT_SERVING, SERVING, health_of
from tests.uploading import create_request, resume_messages


@contextlib.contextmanager
def tmpfs(path: Path, size: int) -> Iterator[Path]:
    """A tmpfs of `size` bytes mounted at `path` (the test runs as root, as CI does)."""
    path.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (the fault suite needs root): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.timeout(600)
async def test_a_full_store_refuses_keeps_whole_parts_and_resumes(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "store", 80 * MiB) as store:
        cluster = Cluster.start(tmp_path / "cluster", store_dir=store, QUARRY_MIN_FREE_BYTES=str(8 * MiB))
        try:
            await _fill_and_recover(cluster, store, tmp_path)
        finally:
            cluster.stop()


async def _fill_and_recover(cluster: Cluster, store: Path, tmp_path: Path) -> None:
    server = cluster.start_server()
    cluster.start_worker()
    namespace = "full"
    filler = store / "filler"
    # 30 MiB left: part 1 (16 MiB) fits; of part 2, three 4 MiB writes fit and the fourth is cut short: the
    # write the issue saw recorded as a whole part, with the rest of it zeros.
    filler.write_bytes(b"\1" * (50 * MiB))

    data = os.urandom(40 * MiB + 333)
    sha = hashlib.sha256(data).hexdigest()
    api = cluster.api(namespace=namespace)
    try:
        created = (await api.uploads.CreateUpload(create_request("plain", "p.bin", len(data), sha,
                                                                 auto_commit=True))).upload
        with pytest.raises(grpc.RpcError) as refused:
            await upload_blocking(server.address, namespace, resume_messages(created.name, 0, data), token=api.token)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
        assert error_info(refused.value)[0] == "STORE_FULL", refused.value
        kept = (await api.uploads.GetUpload(pb.GetUploadRequest(name=created.name))).upload
        assert kept.state == upload_pb2.UPLOAD_STATE_OPEN and kept.committed_bytes == 16 * MiB
        written = (store / ".multipart" / "staging" / namespace / created.uid).glob("*")
        [part_file] = list(written)
        assert part_file.read_bytes()[:16 * MiB] == data[:16 * MiB]  # the part recorded holds the client's bytes

        full_since = time.monotonic()
        while health_of(server.address, "object-store") != NOT_SERVING:
            assert time.monotonic() - full_since < 20
            await asyncio.sleep(0.2)
        assert health_of(server.address, "postgres") == SERVING
        assert "fewer than QUARRY_MIN_FREE_BYTES" in server.process.log()

        # An SDK upload meanwhile: refused, it keeps trying inside its retry budget.
        sdk_file = tmp_path / "s.bin"
        sdk_sha = write_random(sdk_file, 20 * MiB + 5)
        refused_calls = 'quarry_grpc_handled_total{code="UNAVAILABLE"'
        refused_before = metric_total(server.metrics_port, refused_calls)
        async with cluster.client(namespace) as client:
            waiting = asyncio.ensure_future(client.upload_file(sdk_file, "sdk", wait=True))
            await wait_metric(server.metrics_port, refused_calls, refused_before + 2)  # refused, and tried again
            assert not waiting.done(), waiting
            filler.unlink()  # space again
            freed = time.monotonic()
            sdk_result = await asyncio.wait_for(waiting, 120)
        offset = kept.committed_bytes
        resumed = await upload_blocking(server.address, namespace, resume_messages(created.name, offset, data[offset:]),
                                        token=api.token)
        assert resumed.upload.state == upload_pb2.UPLOAD_STATE_STAGED
        done = await _promoted(api, created.name)
        assert await ready_sha256(api, done) == sha and await read_back_sha256(api, done) == sha
        assert sdk_result.upload.state == upload_pb2.UPLOAD_STATE_PROMOTED and sdk_result.sha256 == sdk_sha
        assert await read_back_sha256(api, sdk_result.upload) == sdk_sha
        recovered = time.monotonic() - freed
        while health_of(server.address, "object-store") != SERVING:
            assert time.monotonic() - freed < 20
            await asyncio.sleep(0.2)
    finally:
        await api.channel.close()
    assert await cluster.wait_no_leftovers(namespace) == {"uploads": {}, "versions": 0, "staged": 0,
                                                          "multipart": 0, "unreferenced": 0}
    print(f"\nstore full: plain upload refused STORE_FULL with 16 of 40 MiB committed; health NOT_SERVING; "
          f"both uploads READY {recovered:.1f} s after space came back")


async def _promoted(api, name: str) -> upload_pb2.Upload:  # type: ignore[no-untyped-def]
    for _ in range(600):
        upload = (await api.uploads.GetUpload(pb.GetUploadRequest(name=name))).upload
        if upload.state == upload_pb2.UPLOAD_STATE_PROMOTED:
            version = (await full_version(api, upload.version))
            assert version.files
            return upload  # type: ignore[no-any-return]
        assert upload.state != upload_pb2.UPLOAD_STATE_FAILED, upload
        await asyncio.sleep(0.1)
    raise AssertionError(f"{name} never PROMOTED")
