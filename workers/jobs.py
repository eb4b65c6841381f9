"""Job functions: thin wrappers that take ids, call domain code, and count outcomes.

Every job is safe to run twice: the domain code checks state first and moves it with a conditional
UPDATE, so a repeated or stale job does nothing.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from server import metrics

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


async def validate_upload(ctx: dict[str, Any], upload_id: str) -> None:
    """Validate a STAGED upload (body arrives with the workers issue)."""
    with _Timed("validate_upload"):
        log.info("validate_upload has no body yet", extra={"upload_id": upload_id})


async def promote_version(ctx: dict[str, Any], version_id: str) -> None:
    """Promote a version's validated uploads into fresh storage (body arrives with the workers issue)."""
    with _Timed("promote_version"):
        log.info("promote_version has no body yet", extra={"version_id": version_id})


async def sweep(ctx: dict[str, Any]) -> None:
    """Re-enqueue stuck work, expire abandoned uploads, collect garbage (body arrives with the workers issue)."""
    with _Timed("sweep"):
        log.debug("sweep has no body yet")
