"""The enqueue side of the job queue: with `workers/runtime.py`, the only code that imports arq (it is in
maintenance mode; keep it replaceable).

The server and the jobs enqueue through `JobQueue`. Job ids are deterministic (e.g. "validate_upload:{id}")
so a job enqueued twice runs once; results are not kept, so the same id can be enqueued again once the job
has finished (the sweep relies on that, and every job checks state first, so a second run changes nothing).
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

    async def enqueue_for(self, function: str, subject: str, subject_field: str) -> None:
        """Queue `function(subject)` under the deterministic id `function:subject`, so a repeat is a no-op.
        A failure is only logged (with `subject_field` naming the id): the sweep re-enqueues lost work."""
        try:
            await self.enqueue(function, subject, job_id=f"{function}:{subject}")
        except Unavailable as exc:
            log.warning("could not enqueue %s; the sweep will", function,
                        extra={subject_field: subject, "error": str(exc)})

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
        """Close the connection pool."""
        await self._redis.aclose()
