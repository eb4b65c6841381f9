"""Redis killed (-9) and started again, empty, five times while twenty uploads go through.

Every queued job dies with Redis each time. No worker is restarted by hand: the workers' loops wait Redis
out, the server retries the enqueues that failed, the requeue cron finds what was lost, and every upload ends
READY with the sha256 the client sent, read back through ReadFile, with nothing left behind.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from quarry.v1 import upload_pb2

from tests.faults.cluster import Cluster, MiB, read_back_sha256, ready_sha256, write_random
from tests.samples import csv_sample

UPLOADS = 20
RESTARTS = 5


@pytest.mark.timeout(900)
async def test_redis_restarted_five_times_during_twenty_uploads(cluster: Cluster, tmp_path: Path) -> None:
    cluster.start_server()
    workers = [cluster.start_worker(f"worker{i}") for i in range(2)]
    pids = [w.pid for w in workers]
    namespace = "redis-restarts"
    files = []
    for i in range(UPLOADS):
        if i % 4 == 0:  # some tables, whose validation takes a while
            path = tmp_path / f"t{i}.csv"
            sample = csv_sample(300_000 + i * 1000, path=path.name)
            path.write_bytes(sample.data)
            files.append((path, sample.sha256))
        else:
            path = tmp_path / f"b{i}.bin"
            files.append((path, write_random(path, 6 * MiB + i * MiB + 7)))
    downtimes: list[float] = []
    started = time.monotonic()

    async def restarts() -> None:
        for _ in range(RESTARTS):
            await asyncio.sleep(2.5)
            await asyncio.to_thread(cluster.kill_redis)
            down = time.monotonic()
            await asyncio.sleep(1.0)  # the outage itself
            await asyncio.to_thread(cluster.start_redis)
            downtimes.append(time.monotonic() - down)

    async with cluster.client(namespace) as client:
        async def upload(index: int, path: Path) -> object:
            await asyncio.sleep(index * 0.8)  # spread over the restarts: always some in flight
            return await client.upload_file(path, f"ds{index}", wait=True)

        restarter = asyncio.ensure_future(restarts())
        results = await asyncio.wait_for(asyncio.gather(*(upload(i, p) for i, (p, _) in enumerate(files))), 600)
        await restarter
    elapsed = time.monotonic() - started

    api = cluster.api(namespace=namespace)
    try:
        for result, (_, sha) in zip(results, files, strict=True):
            assert result.upload.state == upload_pb2.UPLOAD_STATE_PROMOTED, result.upload  # type: ignore[attr-defined]
            assert await ready_sha256(api, result.upload) == sha  # type: ignore[attr-defined]
            assert await read_back_sha256(api, result.upload) == sha  # type: ignore[attr-defined]
    finally:
        await api.channel.close()
    assert [w.pid for w in workers] == pids and all(w.alive() for w in workers)  # nobody restarted a worker
    outages = [w.process.log().count("redis is not answering; the worker keeps trying") for w in workers]
    assert all(count >= 1 for count in outages), outages
    assert len(downtimes) == RESTARTS
    assert await cluster.wait_no_leftovers(namespace) == {"uploads": {}, "versions": 0, "staged": 0,
                                                          "multipart": 0, "unreferenced": 0}
    print(f"\n{UPLOADS} uploads READY in {elapsed:.1f} s through {RESTARTS} Redis restarts (down "
          f"{min(downtimes):.1f}-{max(downtimes):.1f} s each); outages seen per worker: {outages}")
