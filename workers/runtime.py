"""The worker's runtime on arq: retries and giving up, the heartbeat of running jobs, the cron grid, and a
loop that outlives its dependencies.

A job raises a retryable domain error (Unavailable, Aborted) to be retried with exponential backoff;
once its tries are exhausted its `give_up` hook runs, which marks the row FAILED. Any other exception is
a bug: the hook runs at once with Internal (reason JOB_CRASHED). Two failures are nobody's fault but the
outage's, and never use up a job's tries: the worker's own database or queue being down (the job runs again
once they are back), and a give-up that cannot be recorded for the same reason.

arq's own loop ends at the first Redis error; `ResilientWorker` keeps it going: a failed poll is retried with
backoff (redis-py reconnects on the next command) and logged once per outage, and while a dependency the
jobs need is down the worker takes no new job (`accepting`), so none fails for it.
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
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from server.model.errors import Internal, QuarryError
from server.storage.jobqueue import redis_settings

log = logging.getLogger(__name__)

# Errors that mean "Redis is not answering" (BusyLoadingError, while it loads its data, is a ConnectionError).
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
# Failures of the worker's own dependencies: waiting them out costs the job none of its tries.
OUTAGE_REASONS = frozenset({"DATABASE_UNAVAILABLE", "QUEUE_UNAVAILABLE"})
# arq drops a job after this many runs; our wrapper gives up long before, except through an outage.
ARQ_MAX_TRIES = 1_000_000
POLL_BACKOFF_MAX = 5.0

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


def _outage(exc: QuarryError) -> bool:
    return exc.retryable and exc.reason in OUTAGE_REASONS


def _wrap(spec: JobSpec, max_tries: int, heartbeat: float | None = None) -> JobFunction:
    async def job(ctx: JobContext, *args: Any) -> Any:
        beat = asyncio.create_task(_heartbeat(ctx, heartbeat)) if heartbeat else None
        extra = {"job": spec.name, "job_args": [str(a) for a in args]}
        tries = int(ctx.get("job_try", 1))
        try:
            return await spec.run(ctx, *args)
        except QuarryError as exc:
            if exc.retryable and (tries < max_tries or _outage(exc)):
                log.warning("job %s failed transiently (try %d of %d): %s", spec.name, tries, max_tries, exc,
                            extra=extra)
                raise Retry(defer=_backoff(tries)) from exc
            await _give_up(spec, ctx, args, exc, tries)
            raise
        except Exception as exc:
            # A bug, not the data's fault: give up at once (retrying would only repeat it), with the detail logged.
            log.exception("job %s crashed", spec.name, extra=extra)
            await _give_up(spec, ctx, args, Internal(f"{spec.name} crashed: {type(exc).__name__}",
                                                     reason="JOB_CRASHED"), tries)
            raise
        finally:
            if beat is not None:
                beat.cancel()

    job.__qualname__ = spec.name
    job.__name__ = spec.name
    return job


async def _give_up(spec: JobSpec, ctx: JobContext, args: tuple[Any, ...], error: QuarryError, tries: int) -> None:
    """Run the job's give-up hook; if the failure cannot be recorded because a dependency is down, the job is
    run again later (it gives up then, or succeeds) rather than left for the sweep."""
    if spec.give_up is None:
        return
    try:
        await spec.give_up(ctx, args, error)
    except QuarryError as exc:
        if not exc.retryable:
            raise
        log.warning("job %s could not record that it gave up (%s); it runs again later", spec.name, exc,
                    extra={"job": spec.name, "job_args": [str(a) for a in args]})
        raise Retry(defer=_backoff(tries)) from exc


def _cron_seconds(interval: float) -> set[int] | None:
    step = max(1, int(interval))
    if step >= 60:
        return None
    return set(range(0, 60, step))


class ResilientWorker(Worker):
    """arq's Worker, whose loop survives Redis outages, and which takes no job while `accepting()` says no."""

    def __init__(self, *args: Any, accepting: Callable[[], bool], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._accepting = accepting
        self._poll_failures = 0
        self.redis_up = True

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except REDIS_DOWN as exc:
            self._poll_failures += 1
            self.redis_up = False
            if self._poll_failures == 1:
                log.error("redis is not answering; the worker keeps trying: %s", exc or type(exc).__name__)
            await asyncio.sleep(min(POLL_BACKOFF_MAX, 0.1 * 2 ** min(self._poll_failures, 10)))
            return
        if self._poll_failures:
            log.warning("redis answers again after %d failed polls", self._poll_failures)
            self._poll_failures = 0
        self.redis_up = True

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        if job_ids and not self._accepting():
            return  # a dependency the jobs need is down: they stay queued until it is back
        try:
            await super().start_jobs(job_ids)
        except REDIS_DOWN:
            # arq took a job slot (its semaphore and counter) for the job it was starting when Redis failed, and
            # never gives it back: after a few outages the worker would take no job ever again.
            self.job_counter -= 1
            self.sem.release()
            raise


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
    accepting: Callable[[], bool] = lambda: True,
) -> ResilientWorker:
    """An arq worker running `jobs` and `crons`."""
    cron_jobs = []
    for spec in crons:
        seconds = _cron_seconds(spec.interval_seconds)
        minutes = None if seconds is not None else set(range(0, 60, max(1, int(spec.interval_seconds // 60))))
        # `unique` gives each run its own job id, `{name}:{time}`, which workers share: one run per time however many
        # workers there are. (One fixed id for every run would let a run start only once the last one's in-progress
        # mark lapses, which arq keeps a minute after a cron job: no cron could run more often than that.)
        cron_jobs.append(cron(cast(Any, _wrap(JobSpec(spec.name, spec.run), 1)), name=spec.name, second=seconds or {0},
                              minute=minutes, unique=True, run_at_startup=True))
    return ResilientWorker(
        functions=[_arq_function(_wrap(spec, max_tries, heartbeat), spec.name) for spec in jobs],
        accepting=accepting,
        cron_jobs=cron_jobs,
        redis_settings=redis_settings(redis_url),
        on_startup=cast(Any, on_startup),
        max_jobs=max_jobs,
        job_timeout=job_timeout,
        max_tries=ARQ_MAX_TRIES,  # our wrapper decides when to give up; arq must not drop the job first
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
    """Run the worker's loop until it is stopped by a signal (or drains the queue in burst mode). Redis
    failing before the loop has started (arq connects and logs in first) is waited out too."""
    failures = 0
    try:
        while True:
            try:
                # async_run keeps the main task that arq's signal handler cancels on SIGTERM/SIGINT.
                await worker.async_run()
                return
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # this task itself is being cancelled
                return  # arq's signal handler ended its loop: a normal stop
            except REDIS_DOWN as exc:
                failures += 1
                log.error("the worker cannot start its loop, redis is not answering (try %d): %s", failures, exc)
                await asyncio.sleep(min(POLL_BACKOFF_MAX, 0.1 * 2 ** min(failures, 10)))
    finally:
        with contextlib.suppress(*REDIS_DOWN):  # closing writes to Redis, which may be down
            await worker.close()
