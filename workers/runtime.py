"""The worker's runtime on arq: retries and giving up, the heartbeat of running jobs, the cron grid.

A job raises a retryable domain error (Unavailable, Aborted) to be retried with exponential backoff;
once its tries are exhausted its `give_up` hook runs, which marks the row FAILED. Any other exception is
a bug: the hook runs at once with Internal (reason JOB_CRASHED).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from arq import Retry, cron
from arq.constants import in_progress_key_prefix
from arq.worker import Worker, func

from server.model.errors import Internal, QuarryError
from server.storage.jobqueue import redis_settings

log = logging.getLogger(__name__)

JobContext = dict[str, Any]
JobFunction = Callable[..., Awaitable[Any]]
GiveUp = Callable[[JobContext, tuple[Any, ...], BaseException], Awaitable[None]]


@dataclass(frozen=True)
class JobSpec:
    """A job function, and what to do when its retryable failures exhaust its tries."""

    name: str
    run: JobFunction
    give_up: GiveUp | None = None


@dataclass(frozen=True)
class CronSpec:
    """A job run every `interval_seconds` (rounded to whole seconds of the minute grid arq supports)."""

    name: str
    run: JobFunction
    interval_seconds: float


def _backoff(job_try: int) -> float:
    return float(min(60, 2 ** job_try))


async def _heartbeat(ctx: JobContext, ttl: float) -> None:
    """Keep this job's in-progress mark alive for `ttl` at a time: if the worker dies, the mark lapses and
    another worker picks the job up within `ttl` (arq alone would wait for the whole job timeout)."""
    key = in_progress_key_prefix + str(ctx["job_id"])
    while True:
        with contextlib.suppress(Exception):  # a missed beat only delays recovery
            await ctx["redis"].pexpire(key, int(ttl * 1000))
        await asyncio.sleep(ttl / 3)


def _wrap(spec: JobSpec, max_tries: int, heartbeat: float | None = None) -> JobFunction:
    async def job(ctx: JobContext, *args: Any) -> Any:
        beat = asyncio.create_task(_heartbeat(ctx, heartbeat)) if heartbeat else None
        try:
            return await spec.run(ctx, *args)
        except QuarryError as exc:
            tries = int(ctx.get("job_try", 1))
            if exc.retryable and tries < max_tries:
                log.warning("job %s failed transiently (try %d of %d): %s", spec.name, tries, max_tries, exc,
                            extra={"job": spec.name, "job_args": [str(a) for a in args]})
                raise Retry(defer=_backoff(tries)) from exc
            if spec.give_up is not None:
                await spec.give_up(ctx, args, exc)
            raise
        except Exception as exc:
            # A bug, not the data's fault: give up at once (retrying would only repeat it), with the detail logged.
            log.exception("job %s crashed", spec.name, extra={"job": spec.name, "job_args": [str(a) for a in args]})
            if spec.give_up is not None:
                await spec.give_up(ctx, args, Internal(f"{spec.name} crashed: {type(exc).__name__}",
                                                       reason="JOB_CRASHED"))
            raise
        finally:
            if beat is not None:
                beat.cancel()

    job.__qualname__ = spec.name
    job.__name__ = spec.name
    return job


def _cron_seconds(interval: float) -> set[int] | None:
    step = max(1, int(interval))
    if step >= 60:
        return None
    return set(range(0, 60, step))


def build_worker(
    redis_url: str,
    jobs: Sequence[JobSpec],
    crons: Sequence[CronSpec],
    *,
    on_startup: Callable[[JobContext], Awaitable[None]],
    max_jobs: int,
    job_timeout: float,
    max_tries: int,
    heartbeat: float = 30.0,
    shutdown_grace: float = 10.0,
    burst: bool = False,
) -> Worker:
    """An arq worker running `jobs` and `crons`."""
    cron_jobs = []
    for spec in crons:
        seconds = _cron_seconds(spec.interval_seconds)
        minutes = None if seconds is not None else set(range(0, 60, max(1, int(spec.interval_seconds // 60))))
        cron_jobs.append(cron(cast(Any, _wrap(JobSpec(spec.name, spec.run), 1)), name=spec.name, second=seconds or {0},
                              minute=minutes, unique=True, run_at_startup=True, job_id=f"cron:{spec.name}"))
    return Worker(
        functions=[_arq_function(_wrap(spec, max_tries, heartbeat), spec.name) for spec in jobs],
        cron_jobs=cron_jobs,
        redis_settings=redis_settings(redis_url),
        on_startup=cast(Any, on_startup),
        max_jobs=max_jobs,
        job_timeout=job_timeout,
        max_tries=max_tries + 1,  # our wrapper decides when to give up; arq must not drop the job first
        keep_result=0,
        burst=burst,
        handle_signals=not burst,
        poll_delay=0.2,
        retry_jobs=True,
        allow_abort_jobs=False,
        # On SIGTERM, running jobs get this long to finish before they are cancelled (and later re-run).
        job_completion_wait=int(shutdown_grace),
    )


def _arq_function(coroutine: JobFunction, name: str) -> Any:
    return func(cast(Any, coroutine), name=name)


async def run_worker_until_stopped(worker: Worker) -> None:
    """Run the worker's loop until it is stopped by a signal (or drains the queue in burst mode)."""
    try:
        # async_run keeps the main task that arq's signal handler cancels on SIGTERM/SIGINT.
        await worker.async_run()
    finally:
        await worker.close()
