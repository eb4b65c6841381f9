"""The background work: validate a staged upload, promote a version into fresh storage.

Both are safe to run twice and to run after a crash at any point: each checks state first, moves it with
a conditional UPDATE, copies objects only when their content-addressed key is missing, and builds the
version in one transaction under the dataset's lock. Nothing is recorded before its bytes are durable.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid

from server import metrics
from server.domain.registration import Registrations
from server.domain.renditions import Renditions, fresh_key
from server.domain.uploads import ENDED_REASONS, Uploads
from server.domain.validation import Report, validate_object
from server.domain.validation.rules import RULE_CODES
from server.domain.versions import Change, Versions
from server.model.errors import (
    BaseMoved,
    ChecksumMismatch,
    DataLoss,
    Internal,
    InvalidFile,
    NotFound,
    QuarryError,
    RuleViolation,
    WrongState,
)
from server.model.failures import Failure
from server.model.report import ColumnInfo
from server.model.uploads import Upload, UploadState
from server.model.versions import VERSION_FINAL_STATES, VERSION_WORKING_STATES, Version, VersionFile, VersionState
from server.storage import uploads as uploads_repo
from server.storage import versions as versions_repo

log = logging.getLogger(__name__)

WAITING = frozenset({UploadState.STAGED, UploadState.VALIDATING})
DEAD = frozenset(ENDED_REASONS)  # FAILED, CANCELLED, EXPIRED


def _failure_of(report: Report, path: str) -> Failure:
    issue = report.errors[0]
    kind = RuleViolation if issue.code in RULE_CODES else InvalidFile
    more = f" (and {report.error_count - 1} more)" if report.error_count > 1 else ""
    return Failure.of(kind(f"{path}: {issue.message}{more}", reason=issue.code), path)


def _gave_up(error: QuarryError) -> Failure:
    """The failure of a job that will not run again. A crash (Internal) is our bug, not the file's: it stays
    retryable, so the staged bytes are kept for RetryUpload once the bug is fixed."""
    failure = Failure.of(error)
    return dataclasses.replace(failure, retryable=True) if isinstance(error, Internal) else failure


class Pipeline:
    """validate_upload and promote_version."""

    def __init__(self, uploads: Uploads, versions: Versions, registrations: Registrations | None = None) -> None:
        self.uploads = uploads
        self.versions = versions
        self.registrations = registrations
        self.db = uploads.db
        self.store = uploads.store
        self.renditions = Renditions(self.db, self.store)

    # --- validation ----------------------------------------------------------------------------------

    async def validate_upload(self, upload_id: uuid.UUID) -> None:
        """Validate a STAGED upload; then promote its version, or commit it when it asked to be."""
        async with self.db.connection() as connection:
            upload = await uploads_repo.get(connection, upload_id)
        if upload is None:
            return
        if upload.state in (UploadState.VALIDATED, UploadState.PROMOTED):
            await self._after_validation(upload)  # a re-run: make sure what follows happened
            return
        if upload.state not in WAITING:
            return
        async with self.db.transaction() as connection:
            await uploads_repo.transition(connection, upload.id, [UploadState.STAGED], UploadState.VALIDATING)
        metrics.UPLOAD_TRANSITIONS.labels(state=UploadState.VALIDATING.value).inc()
        log.info("validating", extra={"upload_id": str(upload.id), "path": upload.path, "size": upload.size})
        report = await self._validate(upload)
        metrics.VALIDATED_BYTES.inc(report.bytes_read)
        failure = None
        if not report.ok:
            failure = _failure_of(report, upload.path)
        elif upload.sha256 and upload.sha256 != report.sha256:
            failure = Failure.of(ChecksumMismatch(
                f"{upload.path}: the content's sha256 is {report.sha256}, the client declared {upload.sha256}"),
                upload.path)
        async with self.db.transaction() as connection:
            if failure is not None:
                moved = await uploads_repo.transition(connection, upload.id, [UploadState.VALIDATING],
                                                      UploadState.FAILED, failure=failure, report=report.to_json())
            else:
                moved = await uploads_repo.set_validated(
                    connection, upload.id, sha256=report.sha256, size=report.bytes_read, format=report.format.value,
                    columns=[c.to_json() for c in report.columns], arrow_schema=report.arrow_schema,
                    row_count=report.row_count, report=report.to_json(), stats=[s.to_json() for s in report.stats])
            current = await uploads_repo.get(connection, upload.id)
        if not moved or current is None:
            return  # cancelled meanwhile
        state = UploadState.FAILED if failure else UploadState.VALIDATED
        metrics.UPLOAD_TRANSITIONS.labels(state=state.value).inc()
        log.info("validated", extra={"upload_id": str(upload.id), "state": state.value, "format": report.format.value,
                                     "rows": report.row_count, "reason": failure.reason if failure else ""})
        await self._after_validation(current)  # first: a bound version learns of the failure even if the purge fails
        if failure is not None:
            # An invalid file is never retried: its bytes are of no use (the sweep retries a failed purge).
            await self.uploads.purge(current)

    async def _validate(self, upload: Upload) -> Report:
        assert upload.size is not None
        async with self.db.connection() as connection:
            head = await versions_repo.dataset_head_by_id(connection, upload.dataset_id)
            previous: tuple[ColumnInfo, ...] | None = None
            if head is not None and head.current_version_id is not None:
                existing = await versions_repo.file(connection, head.current_version_id, upload.path)
                previous = existing.columns if existing is not None else None
        assert head is not None
        if not await self.store.exists(upload.staging_key):
            raise DataLoss(f"the staged bytes of {upload.name} are missing", reason="STAGED_OBJECT_MISSING")
        return await validate_object(self.store, upload.staging_key, upload.size, upload.path, upload.content_type,
                                     head.rules, previous)

    async def _after_validation(self, upload: Upload) -> None:
        if upload.version_id is not None:
            await self.versions.enqueue_promotion(upload.version_id, after_change=True)
        elif upload.auto_commit and upload.state == UploadState.VALIDATED:
            await self._auto_commit(upload)

    async def _auto_commit(self, upload: Upload) -> None:
        version_id = None
        async with self.db.transaction() as connection:
            head = await versions_repo.dataset_head_by_id(connection, upload.dataset_id, for_update=True)
            assert head is not None
            if head.state == "DELETED":
                failure = Failure.of(NotFound(f"{upload.path}: dataset {head.name!r} was deleted before the upload "
                                              "could join it", reason="DATASET_DELETED"), upload.path)
                await uploads_repo.transition(connection, upload.id, [UploadState.VALIDATED], UploadState.FAILED,
                                              failure=failure)
            else:
                message = upload.commit_message or f"upload {upload.path}"
                change = Change((upload.id,), (), message, f"auto:{upload.id}", "auto-commit")
                version_id = await self.versions.commit_in(connection, head, head.current_version_id, change)
        if version_id is None:
            await self.uploads.purge(upload)
        else:
            await self.versions.enqueue_promotion(version_id)

    async def validation_gave_up(self, upload_id: uuid.UUID, error: QuarryError) -> None:
        """Retries are exhausted (or the error is final): the upload is FAILED with the reason."""
        async with self.db.transaction() as connection:
            moved = await uploads_repo.transition(connection, upload_id, [UploadState.STAGED, UploadState.VALIDATING],
                                                  UploadState.FAILED, failure=_gave_up(error))
            upload = await uploads_repo.get(connection, upload_id)
        if moved and upload is not None:
            metrics.UPLOAD_TRANSITIONS.labels(state=UploadState.FAILED.value).inc()
            log.warning("validation gave up", extra={"upload_id": str(upload_id), "reason": error.reason})
            if upload.version_id is not None:
                await self.versions.enqueue_promotion(upload.version_id, after_change=True)

    # --- promotion -----------------------------------------------------------------------------------

    async def promote_version(self, version_id: uuid.UUID) -> None:
        """Copy a version's validated uploads into fresh storage and make it READY, all or nothing."""
        async with self.db.connection() as connection:
            version = await versions_repo.get(connection, version_id)
            uploads = await uploads_repo.by_version(connection, version_id) if version else []
        if version is None or version.state in VERSION_FINAL_STATES:
            return
        if version.registration is not None:
            await self._promote_registration(version)
            return
        dead = next((u for u in uploads if u.state in DEAD), None)
        if dead is not None:
            gone = WrongState(f"{dead.path}: the upload was {dead.state.value}", state=dead.state.value,
                              reason=ENDED_REASONS[dead.state])
            failure = dead.failure or Failure.of(gone)
            await self._fail(version, dataclasses.replace(failure, path=dead.path))
            return
        if any(u.state in WAITING for u in uploads):
            async with self.db.transaction() as connection:
                await versions_repo.transition(connection, version.id, [VersionState.PENDING], VersionState.VALIDATING)
            return  # each upload's validation queues this job again when it ends
        async with self.db.transaction() as connection:
            await versions_repo.transition(connection, version.id, [VersionState.PENDING, VersionState.VALIDATING],
                                           VersionState.PROMOTING)
        log.info("promoting", extra={"version_id": str(version.id), "files": len(uploads)})
        entries = [await self._land(version, upload) for upload in uploads]
        async with self.db.connection() as connection:
            head = await versions_repo.dataset_head_by_id(connection, version.dataset_id)
        if head is not None and head.rules.normalize_to_parquet:
            rendered = []
            for entry in entries:
                try:
                    rendered.append(await self.renditions.render(version.namespace, head.namespace_id,
                                                                 version.dataset_id, entry))
                except InvalidFile as exc:  # the content, not a fault: no retry will convert it
                    await self._fail(version, Failure.of(exc, entry.path))
                    return
            entries = rendered
        await self._finish(version, uploads, entries)

    async def _promote_registration(self, version: Version) -> None:
        """A RegisterFiles version: its objects listed, validated and landed, then the version made READY."""
        assert self.registrations is not None, "the composition root gives every pipeline its registrations"
        entries = await self.registrations.build(version, self._fail)
        if entries is None:
            return
        async with self.db.transaction() as connection:
            await versions_repo.transition(connection, version.id, [VersionState.PENDING, VersionState.VALIDATING],
                                           VersionState.PROMOTING)
        await self._finish(version, [], entries)

    async def _land(self, version: Version, upload: Upload) -> VersionFile:
        """Copy one upload to its content key in fresh storage (skipped when the key exists)."""
        async with self.db.connection() as connection:
            staged = await versions_repo.validated_file(connection, upload.id)
            if staged is None:
                raise Internal(f"upload {upload.id} of version {version.id} has no validation result")
            key = fresh_key(version.namespace, version.dataset_id, staged.sha256)
            # Recorded first: the garbage collector never deletes an object whose row was touched recently.
            await versions_repo.touch_object(connection, key=key, namespace_id=upload.namespace_id,
                                             dataset_id=version.dataset_id, sha256=staged.sha256, size=staged.size)
        present = await self.store.stat(key)
        if present is None or present.size != staged.size:
            # Missing, or (from a copy cut short before its size was checked) of the wrong size: copied again.
            try:
                copied = await self.store.copy(upload.staging_key, key)
            except NotFound:
                # Another worker promoting this version may have landed the content and removed the staged copy
                # since we looked: then all is well. Only when fresh storage lacks it too are the bytes lost.
                landed = await self.store.stat(key)
                if landed is None or landed.size != staged.size:
                    raise DataLoss(f"the staged bytes of {upload.path} are gone before promotion",
                                   reason="STAGED_OBJECT_MISSING") from None
            else:
                if copied.size != staged.size:
                    raise DataLoss(f"{upload.path}: the staged object has {copied.size} bytes, validation read "
                                   f"{staged.size}", reason="STAGED_OBJECT_CHANGED")
        return dataclasses.replace(staged, object_key=key)

    async def _finish(self, version: Version, uploads: list[Upload], entries: list[VersionFile]) -> None:
        """One transaction: the version (next number), its files, and the dataset's current version."""
        conflict: Failure | None = None
        async with self.db.transaction() as connection:
            head = await versions_repo.dataset_head_by_id(connection, version.dataset_id, for_update=True)
            current = await versions_repo.get(connection, version.id, for_update=True)
            if head is None or current is None or current.state != VersionState.PROMOTING:
                return
            changed = {e.path for e in entries} | set(version.delete_paths)
            if head.state == "DELETED":
                conflict = Failure.of(NotFound(f"dataset {head.name!r} was deleted before the version was ready",
                                               reason="DATASET_DELETED"))
            elif version.base_id != head.current_version_id:
                moved = await versions_repo.changed_paths(connection, version.base_id, head.current_version_id)
                if moved & changed:
                    path = sorted(moved & changed)[0]
                    conflict = Failure.of(BaseMoved(f"{path}: the dataset moved on since the base version and this "
                                                    "path changed there too"), path)
            if conflict is None:
                parent_files = (await versions_repo.files(connection, head.current_version_id)
                                if head.current_version_id else [])
                files = {f.path: f for f in parent_files if f.path not in changed}
                files.update({e.path: e for e in entries})
                ordered = [files[p] for p in sorted(files)]
                number = (head.current_number or 0) + 1
                await versions_repo.insert_files(connection, version.id, ordered)
                await versions_repo.make_ready(
                    connection, version.id, number=number, parent_id=head.current_version_id,
                    file_count=len(ordered), total_bytes=sum(f.size for f in ordered),
                    total_rows=sum(f.row_count for f in ordered))
                await versions_repo.set_current(connection, head.id, version.id)
                for upload in uploads:
                    await uploads_repo.transition(connection, upload.id, [UploadState.VALIDATED],
                                                  UploadState.PROMOTED)
        if conflict is not None:
            await self._fail(version, conflict)
            return
        metrics.UPLOAD_TRANSITIONS.labels(state=UploadState.PROMOTED.value).inc(len(uploads))
        log.info("version ready", extra={"version_id": str(version.id), "dataset": version.dataset,
                                         "number": number, "files": len(ordered)})
        for upload in uploads:  # the staging copies are no longer needed (the sweep retries a failure)
            try:
                await self.uploads.purge(upload)
            except QuarryError as exc:
                log.warning("could not remove staged bytes", extra={"upload_id": str(upload.id), "error": str(exc)})

    async def _fail(self, version: Version, failure: Failure) -> None:
        """The version fails as a whole; its other uploads are freed for another commit."""
        async with self.db.transaction() as connection:
            moved = await versions_repo.transition(
                connection, version.id, VERSION_WORKING_STATES, VersionState.FAILED, failure)
            if moved:
                await uploads_repo.unbind(connection, version.id)
        if moved:
            log.warning("version failed", extra={"version_id": str(version.id), "reason": failure.reason,
                                                 "path": failure.path})

    async def promotion_gave_up(self, version_id: uuid.UUID, error: QuarryError) -> None:
        """Retries are exhausted: the version and its uploads are FAILED; RetryUpload can run it again."""
        failure = _gave_up(error)
        async with self.db.transaction() as connection:
            moved = await versions_repo.transition(
                connection, version_id, VERSION_WORKING_STATES, VersionState.FAILED, failure)
            if moved:
                for upload in await uploads_repo.by_version(connection, version_id):
                    await uploads_repo.transition(connection, upload.id, [UploadState.VALIDATED], UploadState.FAILED,
                                                  failure=dataclasses.replace(failure, path=upload.path))
        log.warning("promotion gave up", extra={"version_id": str(version_id), "reason": error.reason})
