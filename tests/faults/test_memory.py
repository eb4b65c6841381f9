"""Server memory at any load (the measurements of bench/memory_load.py, with the issue's limits asserted).

- 200 clients, one connection each, send a header and 16 MiB and then stall: peak RSS under 600 MiB, other
  clients' GetDataset p99 under 1 s meanwhile, RSS back within 100 MiB of its start once they are gone. Each
  stream ends with a status the client can act on: RESOURCE_EXHAUSTED with RetryInfo (the buffer budget was
  spent; it opened nothing) or ABORTED STREAM_IDLE (its whole parts kept), and the uploads that stalled are
  then resumed and committed: READY with the bytes the clients sent.
- 64 clients upload 20 MB each at once (trying again after RetryInfo when the server is busy): peak RSS
  under 400 MiB, every upload READY.
- One 2 GiB upload: peak RSS under 300 MiB, READY.
"""

from __future__ import annotations

import asyncio
import hashlib
import time

import pytest
from quarry.v1 import dataset_service_pb2 as dpb
from quarry.v1 import upload_pb2, version_pb2
from quarry.v1 import upload_service_pb2 as pb

from bench.memory_load import _BLOCK, MiB, concurrent_uploads, single_upload, stalled_streams
from tests.faults.cluster import Cluster, full_version
from tests.support import Api

NAMESPACE = "bench"  # where bench/memory_load.py's clients act


def expected_sha256(size: int) -> str:
    """The sha256 of what the bench's clients send: its 1 MiB block, repeated (the last one cut)."""
    digest = hashlib.sha256()
    for start in range(0, size, len(_BLOCK)):
        digest.update(_BLOCK[:min(len(_BLOCK), size - start)])
    return digest.hexdigest()


async def commit_all(api: Api, dataset: str, uploads: list[upload_pb2.Upload], timeout: float = 300) -> None:
    """Commit STAGED uploads as one version and wait for it to be READY; each file's sha256 is the expected."""
    version = (await api.datasets.CommitVersion(dpb.CommitVersionRequest(
        parent=f"namespaces/{NAMESPACE}/datasets/{dataset}", uploads=[u.name for u in uploads]))).version
    deadline = time.monotonic() + timeout
    while version.state != version_pb2.VERSION_STATE_READY:
        assert version.state != version_pb2.VERSION_STATE_FAILED, version
        assert time.monotonic() < deadline, f"{version.name} never READY"
        await asyncio.sleep(0.2)
        version = (await full_version(api, version.name))
    files = {f.path: f for f in version.files}
    for upload in uploads:
        assert files[upload.path].sha256 == expected_sha256(upload.size_bytes), upload.path


COMMITTABLE = {upload_pb2.UPLOAD_STATE_STAGED, upload_pb2.UPLOAD_STATE_VALIDATING, upload_pb2.UPLOAD_STATE_VALIDATED}


async def listed(api: Api, dataset: str, states: set[int]) -> list[upload_pb2.Upload]:
    """The namespace's uploads to `dataset` in one of `states`."""
    found: list[upload_pb2.Upload] = []
    token = ""
    while True:
        page = await api.uploads.ListUploads(pb.ListUploadsRequest(page_size=500, page_token=token))
        found += [u for u in page.uploads if u.dataset == dataset and u.state in states]
        token = page.next_page_token
        if not token:
            return found


@pytest.mark.timeout(900)
async def test_memory_stays_bounded_at_any_load(cluster: Cluster) -> None:
    server = cluster.start_server(QUARRY_STREAM_IDLE_SECONDS="5")
    cluster.start_worker()
    pid = server.process.pid
    api = cluster.api(namespace=NAMESPACE)
    try:
        # 200 stalled streams; each would be a 20 MiB file, 16 MiB of it sent (one whole part).
        stalled = await stalled_streams(server.address, pid, token=api.token, clients=200, sent=16 * MiB,
                                        size=20 * MiB, hold=30)
        print("\n" + "\n".join(stalled.lines()))
        assert stalled.peak_rss < 600 * MiB
        assert stalled.probe.quantile(0.99) < 1.0 and not stalled.probe.failures
        assert stalled.after_rss - stalled.start_rss < 100 * MiB
        assert set(stalled.endings) <= {"RESOURCE_EXHAUSTED", "ABORTED"}, stalled.endings
        idle = await listed(api, "stalled", {upload_pb2.UPLOAD_STATE_OPEN})
        assert len(idle) == stalled.endings["ABORTED"]  # the refused streams opened nothing
        resumed = []
        for upload in idle:  # the ones that stalled resume where they stopped
            assert upload.committed_bytes == 16 * MiB
            rest = [pb.UploadRequest(header=pb.UploadHeader(upload=upload.name, write_offset=16 * MiB))]
            rest += [pb.UploadRequest(chunk=pb.UploadChunk(data=_BLOCK)) for _ in range(4)]
            rest.append(pb.UploadRequest(finish=pb.UploadFinish()))
            resumed.append((await api.uploads.Upload(_stream(rest))).upload)
        await commit_all(api, "stalled", resumed)

        many = await concurrent_uploads(server.address, pid, token=api.token, clients=64, size=20_000_000)
        print("\n".join(many.lines()))
        assert many.peak_rss < 400 * MiB
        assert many.outcomes["UPLOAD_STATE_STAGED"] == 64, many.outcomes
        await commit_all(api, "many", await listed(api, "many", COMMITTABLE))

        big = await single_upload(server.address, pid, token=api.token, size=2 << 30)
        print("\n".join(big.lines()))
        assert big.peak_rss < 300 * MiB
        assert big.outcomes["UPLOAD_STATE_STAGED"] == 1, big.outcomes
        await commit_all(api, "single", await listed(api, "single", COMMITTABLE))
    finally:
        await api.channel.close()
    assert await cluster.wait_no_leftovers(NAMESPACE) == {"uploads": {}, "versions": 0, "staged": 0,
                                                          "multipart": 0, "unreferenced": 0}


async def _stream(messages: list[pb.UploadRequest]):  # type: ignore[no-untyped-def]
    for message in messages:
        yield message
