"""Job functions: thin wrappers that take ids, call domain code, and count outcomes.

Every job is safe to run twice: the domain code checks state first and moves it with a conditional
UPDATE, so a repeated or stale job does nothing.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from server import metrics
from server.domain.services import Services
from server.model.errors import QuarryError

log = logging.getLogger(__name__)


class _Timed:
    def __init__(self, job: str) -> None:
        self.job = job

    def __enter__(self) -> None:
        self.started = time.perf_counter()

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        outcome = "ok" if exc is None else type(exc).__name__
        metrics.JOBS.labels(job=self.job, outcome=outcome).inc()
        metrics.JOB_SECONDS.labels(job=self.job).observe(time.perf_counter() - self.started)


def _services(ctx: dict[str, Any]) -> Services:
    return ctx["services"]


async def validate_upload(ctx: dict[str, Any], upload_id: str) -> None:
    """Validate a STAGED upload, then promote or auto-commit it."""
    with _Timed("validate_upload"):
        await _services(ctx).pipeline.validate_upload(uuid.UUID(upload_id))


async def validation_gave_up(ctx: dict[str, Any], args: tuple[Any, ...], error: BaseException) -> None:
    """validate_upload will not be tried again: the upload is FAILED with the reason."""
    assert isinstance(error, QuarryError)
    await _services(ctx).pipeline.validation_gave_up(uuid.UUID(args[0]), error)


async def promote_version(ctx: dict[str, Any], version_id: str) -> None:
    """Copy a version's files into fresh storage and make it READY."""
    with _Timed("promote_version"):
        await _services(ctx).pipeline.promote_version(uuid.UUID(version_id))


async def promotion_gave_up(ctx: dict[str, Any], args: tuple[Any, ...], error: BaseException) -> None:
    """promote_version will not be tried again: the version is FAILED with the reason."""
    assert isinstance(error, QuarryError)
    await _services(ctx).pipeline.promotion_gave_up(uuid.UUID(args[0]), error)


async def sweep(ctx: dict[str, Any]) -> None:
    """Re-enqueue stuck work, expire abandoned uploads, delete what nothing owns."""
    with _Timed("sweep"):
        await _services(ctx).sweeper.sweep()


async def requeue(ctx: dict[str, Any]) -> None:
    """Queue again the jobs of work unchanged past QUARRY_STUCK_AFTER_SECONDS (a job lost with Redis, or an
    enqueue that failed); a job still queued or running is not queued twice."""
    with _Timed("requeue"):
        await _services(ctx).sweeper.requeue()
