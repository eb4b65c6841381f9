"""A worker reports what it does: Prometheus metrics by job and outcome, and structured logs with ids."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from quarry.v1 import upload_pb2

from server.embedded import EmbeddedPostgres, EmbeddedRedis
from server.listen_ports import free_port
from tests.conftest import own_stack
from tests.samples import csv_sample
from tests.support import QuarryProcess, eventually, open_api, read_metrics, start_server
from tests.test_pipeline import upload_and_watch


def metric(text: str, prefix: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix))


async def test_worker_metrics_and_logs(stack_envs: dict[str, dict[str, str]], postgres: EmbeddedPostgres,
                                       redis_server: EmbeddedRedis, tmp_path: Path) -> None:
    env = await own_stack(stack_envs, "file", postgres, redis_server, "observability", 10)
    port = free_port()
    server = await asyncio.to_thread(start_server, env, tmp_path, "server", "file")
    worker = QuarryProcess("workers", dict(env, QUARRY_WORKER_METRICS_PORT=str(port), QUARRY_LOG_LEVEL="INFO"),
                           tmp_path / "worker.log").start()
    api = open_api(server.address)
    try:
        sample = csv_sample(1000)
        upload, _ = await upload_and_watch(api, "observed", sample)
        assert upload.state == upload_pb2.UPLOAD_STATE_PROMOTED
        # The upload shows PROMOTED once promotion's transaction commits; the job counts itself just after.
        promoted = 'quarry_jobs_total{job="promote_version",outcome="ok"}'

        async def counted() -> str | None:
            text = await asyncio.to_thread(read_metrics, port)
            return text if metric(text, promoted) >= 1 else None

        text = await eventually(counted, "promote_version counted on the worker's /metrics", timeout=10)
        # This stack is the test's own: its worker ran exactly these jobs, once each.
        assert metric(text, 'quarry_jobs_total{job="validate_upload",outcome="ok"}') == 1
        assert metric(text, promoted) == 1
        assert metric(text, 'quarry_jobs_total{job="validate_upload",') == 1  # no other outcome (an error's class)
        assert metric(text, 'quarry_jobs_total{job="promote_version",') == 1
        assert metric(text, 'quarry_job_seconds_count{job="validate_upload"}') == 1
        assert metric(text, "quarry_validated_bytes_total") == len(sample.data)
        records = [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
        validated = [r for r in records if r.get("message") == "validated"]
        assert [(r["upload_id"], r["state"]) for r in validated] == [(upload.uid, "VALIDATED")]
        ready = [r for r in records if r.get("message") == "version ready"]
        assert [(r["number"], r["files"]) for r in ready] == [(1, 1)] and ready[0]["version_id"]
    finally:
        await api.channel.close()
        await asyncio.to_thread(worker.stop)
        await asyncio.to_thread(server.process.stop)
