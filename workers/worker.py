"""Worker entry point: open the dependencies, register the jobs and the sweep cron, run until stopped."""

from __future__ import annotations

import contextlib
from typing import Any

from server import metrics
from server.composition import open_services
from server.connections import open_connections
from server.settings import Settings
from workers import jobs
from workers.runtime import CronSpec, JobSpec, build_worker, run_worker_until_stopped

JOBS = [
    JobSpec("validate_upload", jobs.validate_upload, jobs.validation_gave_up),
    JobSpec("promote_version", jobs.promote_version, jobs.promotion_gave_up),
]


def crons(settings: Settings) -> list[CronSpec]:
    """The periodic jobs."""
    return [CronSpec("sweep", jobs.sweep, settings.sweep_interval_seconds)]


async def run(settings: Settings, *, burst: bool = False) -> None:
    """Run a worker until SIGTERM/SIGINT (or until the queue is empty, in burst mode)."""
    stack = contextlib.AsyncExitStack()
    # Connect before starting arq, so a bad setting fails at once with the variable's name.
    deps = await stack.enter_async_context(open_connections(settings))
    services = await stack.enter_async_context(open_services(deps))
    metrics.serve_metrics(settings.metrics_host, settings.worker_metrics_port, "QUARRY_WORKER_METRICS_PORT")

    async def on_startup(ctx: dict[str, Any]) -> None:
        ctx["services"] = services

    worker = build_worker(
        settings.redis_url, JOBS, crons(settings),
        on_startup=on_startup,
        max_jobs=settings.worker_concurrency, job_timeout=settings.job_timeout_seconds,
        max_tries=settings.job_max_tries, heartbeat=settings.job_heartbeat_seconds,
        shutdown_grace=settings.shutdown_grace_seconds, burst=burst)
    try:
        await run_worker_until_stopped(worker)
    finally:
        await stack.aclose()
