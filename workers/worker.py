"""Worker entry point: open the dependencies, register the jobs and the crons, run until stopped.

While it runs, the worker probes its dependencies every QUARRY_HEALTH_INTERVAL_SECONDS, as the server does:
`/health` on its metrics port answers 503 NOT_SERVING (saying which dependency and why) while one is down, and
no new job starts while Postgres is down; work resumes by itself when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from server import metrics
from server.composition import open_services
from server.connections import Connections, open_connections
from server.domain.health import DEPENDENCIES, DependencyHealth
from server.settings import Settings
from workers import jobs
from workers.runtime import CronSpec, JobSpec, ResilientWorker, build_worker, run_worker_until_stopped

JOBS = [
    JobSpec("validate_upload", jobs.validate_upload, jobs.validation_gave_up),
    JobSpec("promote_version", jobs.promote_version, jobs.promotion_gave_up),
]


def crons(settings: Settings) -> list[CronSpec]:
    """The periodic jobs: the sweep, and (more often, as it is cheap) re-queueing work whose job was lost."""
    return [CronSpec("sweep", jobs.sweep, settings.sweep_interval_seconds),
            CronSpec("requeue", jobs.requeue, max(1.0, settings.stuck_after_seconds / 2))]


class WorkerHealth:
    """The worker's view of its dependencies: probed in the background, read by /health and the job gate."""

    def __init__(self, deps: Connections, settings: Settings) -> None:
        self.state = DependencyHealth(DEPENDENCIES, settings.health_failures)
        self._deps = deps
        self._interval = settings.health_interval_seconds
        self.worker: ResilientWorker | None = None

    async def run(self) -> None:
        while True:
            await self.state.refresh(self._deps.probe)
            metrics.WORKER_SERVING.set(1 if self.serving()[0] else 0)
            await asyncio.sleep(self._interval)

    def serving(self) -> tuple[bool, str]:
        """Whether the worker can work, and if not why (for /health)."""
        why = self.state.describe()
        if self.worker is not None and not self.worker.redis_up:
            why = "\n".join(filter(None, [why, "redis: the worker's queue poll fails"]))
        return not why, why

    def accepting(self) -> bool:
        """Whether new jobs may start: not while Postgres, which every job needs, is down."""
        return self.state.up("postgres")


async def run(settings: Settings, *, burst: bool = False) -> None:
    """Run a worker until SIGTERM/SIGINT (or until the queue is empty, in burst mode)."""
    stack = contextlib.AsyncExitStack()
    # Connect before starting arq, so a bad setting fails at once with the variable's name.
    deps = await stack.enter_async_context(open_connections(settings))
    services = await stack.enter_async_context(open_services(deps))
    health = WorkerHealth(deps, settings)
    metrics.serve_metrics(settings.metrics_host, settings.worker_metrics_port, "QUARRY_WORKER_METRICS_PORT",
                          health.serving)

    async def on_startup(ctx: dict[str, Any]) -> None:
        ctx["services"] = services

    worker = build_worker(
        settings.redis_url, JOBS, crons(settings),
        on_startup=on_startup,
        max_jobs=settings.worker_concurrency, job_timeout=settings.job_timeout_seconds,
        max_tries=settings.job_max_tries, heartbeat=settings.job_heartbeat_seconds,
        shutdown_grace=settings.shutdown_grace_seconds, burst=burst, accepting=health.accepting)
    health.worker = worker
    monitor = asyncio.create_task(health.run(), name="worker-health")
    try:
        await run_worker_until_stopped(worker)
    finally:
        monitor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await monitor
        await stack.aclose()
