"""The enqueue side of the job queue: with `workers/runtime.py`, the only code that imports arq (it is in
maintenance mode; keep it replaceable).

The server and the jobs enqueue through `JobQueue`. Job ids are deterministic (e.g. "validate_upload:{id}")
so a job enqueued twice runs once; results are not kept, so the same id can be enqueued again once the job
has finished (the sweep relies on that, and every job checks state first, so a second run changes nothing).
An enqueue that fails (Redis is down) is tried again in the background with backoff for a minute; past that,
the workers' requeue cron finds the work unchanged and queues it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings

from server.model.errors import ConfigError, Unavailable
from server.model.redaction import redact

log = logging.getLogger(__name__)

RETRY_SECONDS = 60.0  # how long a failed enqueue is retried in the background
RETRY_MAX_DELAY = 5.0


def redis_settings(url: str) -> RedisSettings:
    """arq's connection settings for a redis://, rediss:// or unix:// URL."""
    settings = RedisSettings.from_dsn(url)
    settings.conn_timeout = 2
    settings.conn_retries = 0
    return settings


class JobQueue:
    """Enqueue side of the queue."""

    def __init__(self, redis: ArqRedis) -> None:
        self._redis = redis
        self._retries: dict[str, asyncio.Task[None]] = {}

    @classmethod
    async def connect(cls, url: str, timeout: float) -> JobQueue:
        """Connect, retrying until `timeout`; ConfigError naming QUARRY_REDIS_URL if Redis never answers."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return cls(await create_pool(redis_settings(url)))
            except Exception as exc:  # redis raises several unrelated classes for "cannot connect"
                if time.monotonic() >= deadline:
                    raise ConfigError("QUARRY_REDIS_URL", redact(f"cannot connect to {url}: {exc}")) from None
                await asyncio.sleep(0.25)

    async def enqueue(self, function: str, *args: Any, job_id: str, delay: float | None = None) -> bool:
        """Queue `function(*args)` under `job_id`; False when that job is already queued or running."""
        try:
            job = await self._redis.enqueue_job(function, *args, _job_id=job_id, _defer_by=delay)
        except (OSError, ConnectionError) as exc:
            raise Unavailable(f"job queue unavailable: {exc}", reason="QUEUE_UNAVAILABLE") from exc
        except Exception as exc:
            if type(exc).__module__.startswith("redis"):
                raise Unavailable(f"job queue unavailable: {exc}", reason="QUEUE_UNAVAILABLE") from exc
            raise
        return job is not None

    async def enqueue_for(self, function: str, subject: str, subject_field: str) -> bool:
        """Queue `function(subject)` under the deterministic id `function:subject`, so a repeat is a no-op;
        True when it was queued now. A failure is logged (with `subject_field` naming the id) and retried in the
        background, never raised: the work is recorded in Postgres, and the requeue cron covers a lost job."""
        job_id = f"{function}:{subject}"
        try:
            return await self.enqueue(function, subject, job_id=job_id)
        except Unavailable as exc:
            log.warning("could not enqueue %s; trying again in the background", function,
                        extra={subject_field: subject, "error": str(exc)})
            if job_id not in self._retries:
                task = asyncio.create_task(self._retry(function, subject, subject_field, job_id), name=job_id)
                self._retries[job_id] = task
                task.add_done_callback(lambda _: self._retries.pop(job_id, None))
            return False

    async def _retry(self, function: str, subject: str, subject_field: str, job_id: str) -> None:
        deadline = time.monotonic() + RETRY_SECONDS
        delay = 0.25
        while True:
            await asyncio.sleep(delay)
            try:
                await self.enqueue(function, subject, job_id=job_id)
            except Unavailable as exc:
                if time.monotonic() >= deadline:
                    log.warning("could not enqueue %s for %.0f s; the requeue cron will", function, RETRY_SECONDS,
                                extra={subject_field: subject, "error": str(exc)})
                    return
                delay = min(RETRY_MAX_DELAY, delay * 2)
                continue
            log.info("enqueued %s after a failure", function, extra={subject_field: subject})
            return

    @property
    def pending_retries(self) -> int:
        """Enqueues waiting to be tried again."""
        return len(self._retries)

    async def ping(self) -> None:
        """Return when Redis answers; raise Unavailable otherwise."""
        try:
            await asyncio.wait_for(self._redis.ping(), timeout=2)
        except Exception as exc:
            raise Unavailable(f"redis: {exc or type(exc).__name__}", reason="QUEUE_UNAVAILABLE") from exc

    async def queued_job_ids(self) -> list[str]:
        """Ids of the jobs waiting in the queue (for tests and the sweep's reports)."""
        return [str(job.job_id) for job in await self._redis.queued_jobs()]

    async def close(self) -> None:
        """Stop retrying and close the connection pool."""
        for task in list(self._retries.values()):
            task.cancel()
        await asyncio.gather(*self._retries.values(), return_exceptions=True)
        await self._redis.aclose()
