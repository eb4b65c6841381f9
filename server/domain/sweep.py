"""The sweep: the periodic job that repairs what a crash, a lost enqueue or an abandoned client left.

- re-enqueues uploads and versions stuck in a working state past `stuck_after` (jobs are idempotent, and a
  job already queued or running under the same id is not queued twice), and the validation of VALIDATED
  auto-commit uploads whose commit gave up (a re-run of `validate_upload` commits them); this step alone
  also runs as its own cron (`requeue`) every half `stuck_after`, so a job lost with Redis waits well under a
  minute by default;
- expires OPEN uploads past their expiry and deletes their bytes;
- deletes staged bytes still held by cancelled, expired, promoted or invalid uploads;
- aborts multipart writes and deletes staging objects that no upload owns (older than the grace period);
- purges datasets deleted longer ago than the retention period (QUARRY_DELETED_RETENTION_DAYS; until then
  UndeleteDataset restores them): their uploads' staged bytes, then their rows, versions and file lists;
- collects fresh objects that no version references (a clone's versions reference their source's objects, so
  those stay while any clone lists them), each deleted while its row is locked so a promotion can never
  reuse it mid-delete;
- deletes audit events older than the retention period (the only code that deletes any).
Every step is safe to run twice, on several workers at once.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from server import metrics
from server.domain.audit import AuditTrail
from server.domain.uploads import Uploads
from server.domain.versions import Versions
from server.model.errors import QuarryError
from server.model.uploads import UploadState
from server.model.versions import VERSION_WORKING_STATES
from server.storage import sweeping
from server.storage import uploads as uploads_repo
from server.storage import versions as versions_repo

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    """What one sweep did."""

    requeued_uploads: int = 0
    requeued_versions: int = 0
    expired: int = 0
    purged: int = 0
    orphans_removed: int = 0
    datasets_purged: int = 0
    objects_collected: int = 0
    audit_events_deleted: int = 0
    errors: list[str] = field(default_factory=list)


class Sweeper:
    """One sweep over everything."""

    def __init__(self, uploads: Uploads, versions: Versions, *, stuck_after: float, gc_grace: float,
                 audit: AuditTrail | None = None, audit_retention_days: float = 0,
                 deleted_retention_days: float = 7) -> None:
        self.uploads = uploads
        self.audit = audit
        self.audit_retention_days = audit_retention_days
        self.versions = versions
        self.db = uploads.db
        self.store = uploads.store
        self.stuck_after = stuck_after
        self.gc_grace = gc_grace
        self.deleted_retention = deleted_retention_days * 86400

    async def requeue(self) -> SweepReport:
        """Only the first step: re-enqueue stuck work (cheap: one indexed query, and an enqueue that is a no-op
        for a job still queued or running), run far more often than the whole sweep."""
        report = SweepReport()
        await self._requeue(report)
        if report.requeued_uploads or report.requeued_versions:
            log.info("requeue", extra={"uploads": report.requeued_uploads, "versions": report.requeued_versions})
        return report

    async def sweep(self) -> SweepReport:
        """Run every step; a failing step is logged and does not stop the others."""
        report = SweepReport()
        for step in (self._requeue, self._expire, self._purge, self._orphans, self._purge_deleted_datasets,
                     self._collect, self._expire_audit_events):
            try:
                await step(report)
            except QuarryError as exc:
                report.errors.append(f"{step.__name__}: {exc}")
                log.warning("sweep step failed", extra={"step": step.__name__, "error": str(exc)})
        log.info("sweep", extra={k: v for k, v in vars(report).items() if v})
        return report

    async def _requeue(self, report: SweepReport) -> None:
        async with self.db.connection() as connection:
            stuck = await uploads_repo.ids_in_states_before(
                connection, [UploadState.STAGED.value, UploadState.VALIDATING.value], self.stuck_after)
            stuck += await sweeping.uncommitted_auto_commits(connection, self.stuck_after)
            versions = await versions_repo.ids_in_states_before(connection, VERSION_WORKING_STATES, self.stuck_after)
        # Counted only when queued now: a job still queued or running is left alone.
        report.requeued_uploads = sum([await self.uploads.enqueue_validation(i) for i in stuck])
        report.requeued_versions = sum([await self.versions.enqueue_promotion(i) for i in versions])

    async def _expire(self, report: SweepReport) -> None:
        async with self.db.connection() as connection:
            expired = await uploads_repo.expired_open(connection)
        for upload in expired:
            async with self.db.transaction() as connection:
                moved = await uploads_repo.transition(connection, upload.id, [UploadState.OPEN], UploadState.EXPIRED)
            if moved:
                metrics.UPLOAD_TRANSITIONS.labels(state=UploadState.EXPIRED.value).inc()
                report.expired += 1
                await self.uploads.purge(upload)

    async def _purge(self, report: SweepReport) -> None:
        async with self.db.connection() as connection:
            leftovers = await uploads_repo.unpurged(connection)
        for upload in leftovers:
            await self.uploads.purge(upload)
            report.purged += 1

    async def _orphans(self, report: SweepReport) -> None:
        """Staging bytes with no upload owning them: a crash between the store and Postgres."""
        cutoff = datetime.now(UTC) - timedelta(seconds=self.gc_grace)
        multipart = [m async for m in self.store.list_multipart("staging/") if m.initiated < cutoff]
        objects = [o async for o in self.store.list_objects("staging/")]
        owners = {key: _upload_id(key) for key in [m.key for m in multipart] + [o.key for o in objects]}
        async with self.db.connection() as connection:
            owned = await uploads_repo.owns_staging(connection, [i for i in owners.values() if i is not None])
            open_multipart = await sweeping.open_multipart_ids(connection)
        for item in multipart:
            if owners[item.key] not in owned or item.upload_id not in open_multipart:
                await self.store.abort_multipart(item.key, item.upload_id)
                report.orphans_removed += 1
        for obj in objects:
            if owners[obj.key] not in owned and await sweeping.older_than(self.store, obj.key, cutoff):
                await self.store.delete(obj.key)
                report.orphans_removed += 1

    async def _purge_deleted_datasets(self, report: SweepReport) -> None:
        async with self.db.connection() as connection:
            expired = await sweeping.deleted_before(connection, self.deleted_retention)
        for dataset_id in expired:
            async with self.db.connection() as connection:
                held = await uploads_repo.unpurged_of_dataset(connection, dataset_id)
            if any(u.state == UploadState.OPEN for u in held):
                continue  # a client is still writing: the dataset goes once the upload ends or expires
            for upload in held:
                await self.uploads.purge(upload)
            async with self.db.transaction() as connection:
                if await sweeping.purge_dataset(connection, dataset_id, self.deleted_retention):
                    report.datasets_purged += 1
                    log.info("deleted dataset purged", extra={"dataset_id": str(dataset_id)})

    async def _collect(self, report: SweepReport) -> None:
        async with self.db.connection() as connection:
            candidates = await sweeping.unreferenced_objects(connection, self.gc_grace)
        for key in candidates:
            async with self.db.transaction() as connection:
                # Locked while the object goes: a promotion touching this key waits, then copies it again.
                if not await sweeping.lock_if_unreferenced(connection, key, self.gc_grace):
                    continue
                await self.store.delete(key)
                await sweeping.forget_object(connection, key)
            report.objects_collected += 1

    async def _expire_audit_events(self, report: SweepReport) -> None:
        if self.audit is not None and self.audit_retention_days > 0:
            report.audit_events_deleted = await self.audit.sweep(self.audit_retention_days)


def _upload_id(key: str) -> uuid.UUID | None:
    """The upload a staging key belongs to (`staging/{namespace}/{upload id}`)."""
    try:
        return uuid.UUID(key.rsplit("/", 1)[-1])
    except ValueError:
        return None
