"""Postgres killed (-9) mid-flight: uploads streaming, parts landing, jobs running; started again 8 s later.

Nothing is restarted by hand but Postgres: the server's health says `postgres` NOT_SERVING meanwhile (and the
worker's /health 503), the SDK rides the outage out inside its 60 s budget, and every upload ends READY with
the sha256 the client sent, read back through ReadFile, and nothing is left behind.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from quarry.v1 import upload_pb2

from tests.faults.cluster import Cluster, MiB, read_back_sha256, ready_sha256, write_random
from tests.test_server import NOT_SERVING, SERVING, health_of

OUTAGE = 8.0


@pytest.mark.timeout(600)
async def test_postgres_killed_mid_flight(cluster: Cluster, tmp_path: Path) -> None:
    server = cluster.start_server()
    worker = cluster.start_worker()
    namespace = "pg-killed"
    files = [(tmp_path / f"f{i}.bin", 20 * MiB + i * 3 * MiB + 17) for i in range(6)]
    shas = [write_random(path, size) for path, size in files]
    total = sum(size for _, size in files)
    sent: dict[int, int] = {}
    killed_with: list[int] = []
    killed_at: list[float] = []
    halfway = asyncio.Event()

    def progress_of(index: int):  # type: ignore[no-untyped-def]
        def progress(done: int, _: int) -> None:
            sent[index] = done
            if sum(sent.values()) >= total * 2 // 5 and not halfway.is_set():
                killed_at.append(time.monotonic())
                cluster.kill_postgres()  # here, in the middle of the streams, not a moment later
                killed_with.append(sum(sent.values()))
                halfway.set()
        return progress

    async with cluster.client(namespace) as client:
        uploads = [asyncio.ensure_future(client.upload_file(path, f"ds{i}", wait=True, progress=progress_of(i)))
                   for i, (path, _) in enumerate(files)]
        await asyncio.wait_for(halfway.wait(), 120)
        killed = killed_at[0]
        await _wait(lambda: health_of(server.address, "postgres") == NOT_SERVING, 20)
        seen_down = time.monotonic() - killed  # (an upper bound: the first look may come late)
        await _wait(lambda: worker.health()[0] == 503, 20)
        worker_down = time.monotonic() - killed
        assert "postgres" in worker.health()[1]
        await asyncio.sleep(max(0.0, OUTAGE - (time.monotonic() - killed)))  # the outage itself
        gave_up = [task.exception() for task in uploads if task.done()]
        assert not gave_up, f"an upload gave up during the outage: {gave_up!r}"
        await asyncio.to_thread(cluster.start_postgres)
        back = time.monotonic()
        await _wait(lambda: health_of(server.address) == SERVING, 30)
        serving_again = time.monotonic() - back
        results = await asyncio.wait_for(asyncio.gather(*uploads), 300)
        all_ready = time.monotonic() - back

    api = cluster.api(namespace=namespace)
    try:
        for result, sha in zip(results, shas, strict=True):
            assert result.upload.state == upload_pb2.UPLOAD_STATE_PROMOTED, result.upload
            assert result.sha256 == sha
            assert await ready_sha256(api, result.upload) == sha
            assert await read_back_sha256(api, result.upload) == sha
    finally:
        await api.channel.close()
    assert server.process.process is not None and server.process.process.poll() is None
    assert worker.alive()
    assert await cluster.wait_no_leftovers(namespace) == {"uploads": {}, "versions": 0, "staged": 0,
                                                          "multipart": 0, "unreferenced": 0}
    print(f"\npostgres killed with {killed_with[0] / MiB:.0f} of {total / MiB:.0f} MiB sent; health NOT_SERVING "
          f"after {seen_down:.1f} s (worker /health 503 after {worker_down:.1f} s); down {OUTAGE:.0f} s; server "
          f"SERVING {serving_again:.1f} s after the restart; all {len(files)} uploads READY {all_ready:.1f} s after it")


async def _wait(condition, timeout: float) -> float:  # type: ignore[no-untyped-def]
    """Seconds until `condition()` (run in a thread) holds; fails after `timeout`."""
    started = time.monotonic()
    while not await asyncio.to_thread(condition):
        assert time.monotonic() - started < timeout, "never happened"
        await asyncio.sleep(0.1)
    return time.monotonic() - started
