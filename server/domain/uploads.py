"""Upload sessions: create, read, list, complete, cancel, retry and watch.

Writing bytes (the `Upload` stream) lives in `upload_stream.py`. Every state change is a conditional
UPDATE inside a transaction that holds the upload's row lock; bytes are made durable in the store before
Postgres records them; jobs are enqueued after the transaction commits, with a deterministic id.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from server import metrics
from server.domain import quotas
from server.domain.audit import record_in
from server.domain.caller import Caller
from server.domain.listing import PageTokens, page_size, parse_filter
from server.domain.namespaces import existing_namespace
from server.domain.parts import UploadLimits, assemble, choose_part_size
from server.domain.watch import follow
from server.model import names
from server.model.errors import (
    ChecksumMismatch,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    QuarryError,
    ResourceExhausted,
    WrongState,
)
from server.model.failures import Failure
from server.model.objects import CompletedPart, ObjectStore
from server.model.uploads import UPLOAD_CANCELLABLE_STATES, UPLOAD_FINAL_STATES, Upload, UploadState
from server.model.versions import VersionState
from server.storage import namespaces
from server.storage import uploads as repo
from server.storage import versions as versions_repo
from server.storage.db import Database
from server.storage.jobqueue import JobQueue
from server.storage.notifications import UPLOAD_CHANNEL, NotificationHub

log = logging.getLogger(__name__)

MAX_TEXT = 16384
UPLOAD_FILTER_FIELDS = ("state", "dataset")


@dataclass(frozen=True)
class NewUpload:
    """What a client asks for when it opens an upload."""

    dataset: str
    path: str
    declared_size: int | None = None
    declared_sha256: str | None = None
    content_type: str = ""
    auto_commit: bool = False
    commit_message: str = ""
    request_id: str | None = None

    def validated(self, limits: UploadLimits) -> NewUpload:
        """Check every field; INVALID_ARGUMENT (or RESOURCE_EXHAUSTED for a size over the limit) otherwise."""
        names.dataset_name(self.dataset, "upload.dataset")
        names.file_path(self.path, "upload.path")
        if self.declared_size is not None:
            if self.declared_size < 0:
                raise InvalidArgument.field("upload.declared_size_bytes", "must not be negative")
            if self.declared_size > limits.max_upload_bytes:
                raise ResourceExhausted(f"declared size {self.declared_size} exceeds the limit of "
                                        f"{limits.max_upload_bytes} bytes", reason="UPLOAD_TOO_LARGE",
                                        metadata={"max_upload_bytes": str(limits.max_upload_bytes)})
        if self.declared_sha256 is not None:
            names.sha256_hex(self.declared_sha256, "upload.declared_sha256")
        if len(self.content_type) > 255:
            raise InvalidArgument.field("upload.content_type", "at most 255 characters")
        if len(self.commit_message) > MAX_TEXT:
            raise InvalidArgument.field("upload.commit_message", f"at most {MAX_TEXT} characters")
        if self.request_id is not None and not 1 <= len(self.request_id) <= 128:
            raise InvalidArgument.field("request_id", "must have 1-128 characters")
        return self


def staging_key(namespace: str, upload_id: uuid.UUID) -> str:
    """Where an upload's bytes live until promotion."""
    return f"staging/{namespace}/{upload_id}"


class Uploads:
    """The upload use cases."""

    def __init__(self, db: Database, store: ObjectStore, queue: JobQueue, hub: NotificationHub,
                 limits: UploadLimits, page_tokens: PageTokens, max_page_size: int) -> None:
        self.db = db
        self.store = store
        self.queue = queue
        self.hub = hub
        self.limits = limits
        self._tokens = page_tokens
        self._max_page_size = max_page_size

    # --- reading -------------------------------------------------------------------------------------

    async def load(self, caller: Caller, name: str, field: str = "name") -> Upload:
        """The upload a resource name names, in the caller's namespace."""
        namespace, upload_id = names.parse_upload(name, field)
        caller.check(namespace)
        async with self.db.connection() as connection:
            upload = await repo.get(connection, upload_id)
        if upload is None or upload.namespace != namespace:
            raise NotFound(f"upload {name} not found", reason="UPLOAD_NOT_FOUND")
        return upload

    async def list(self, caller: Caller, parent: str, size: int, token: str,
                   filter_text: str) -> tuple[list[Upload], str]:
        """A page of the namespace's uploads, newest first, and the next page's token."""
        namespace = caller.parent(parent)
        limit = page_size(size, self._max_page_size)
        states: list[str] = []
        dataset = None
        for term in parse_filter(filter_text, UPLOAD_FILTER_FIELDS):
            if term.field == "state":
                value = term.value.upper().removeprefix("UPLOAD_STATE_")
                if value not in UploadState.__members__:
                    raise InvalidArgument.field("filter", f"unknown upload state {term.value!r}",
                                                reason="INVALID_FILTER")
                states.append(value)
            else:
                dataset = names.dataset_name(term.value, "filter")
        request = (namespace, filter_text.strip())
        after = self._tokens.decode_time_id(token, request)
        async with self.db.connection() as connection:
            namespace_id = await namespaces.find_id(connection, namespace)
            if namespace_id is None:
                return [], ""
            found = await repo.page(connection, namespace_id, states=states or None, dataset=dataset, after=after,
                                    limit=limit + 1)
        page, more = found[:limit], len(found) > limit
        next_token = ""
        if more:
            last = page[-1]
            next_token = self._tokens.encode_time_id(last.create_time, last.id, request)
        return page, next_token

    # --- opening -------------------------------------------------------------------------------------

    async def create(self, caller: Caller, parent: str, spec: NewUpload) -> tuple[Upload, bool]:
        """Open an upload (or return the one an earlier request with the same request_id opened).

        Returns the upload and whether this call created it. The multipart write is started first, so a
        failure to insert the row aborts it and leaves nothing behind.
        """
        namespace = caller.parent(parent)
        spec = spec.validated(self.limits)
        part_size = choose_part_size(spec.declared_size, self.limits)
        if spec.request_id is not None:
            earlier = await self._by_request_id(namespace, spec.request_id)
            if earlier is not None:
                return earlier, False
        upload_id = uuid.uuid4()
        key = staging_key(namespace, upload_id)
        store_upload_id = await self.store.create_multipart(key)
        try:
            async with self.db.transaction() as connection:
                space = await existing_namespace(connection, namespace, lock=True)
                if spec.request_id is not None:
                    earlier = await repo.find_by_request_id(connection, space.id, spec.request_id)
                    if earlier is not None:
                        await self.store.abort_multipart(key, store_upload_id)
                        await record_in(connection, caller, earlier.name)
                        return earlier, False
                await quotas.check_open_uploads(connection, space, self.limits.max_open_uploads)
                if spec.declared_size:
                    await quotas.check_bytes(connection, space, spec.declared_size)
                if await namespaces.find_live_dataset(connection, space.id, spec.dataset) is None:
                    await quotas.check_datasets(connection, space)
                dataset_id = await namespaces.ensure_draft_dataset(connection, space.id, spec.dataset)
                upload = await repo.insert(
                    connection, upload_id=upload_id, namespace_id=space.id, dataset_id=dataset_id,
                    path=spec.path, declared_size=spec.declared_size, declared_sha256=spec.declared_sha256,
                    content_type=spec.content_type, auto_commit=spec.auto_commit,
                    commit_message=spec.commit_message, part_size=part_size, staging_key=key,
                    store_upload_id=store_upload_id, request_id=spec.request_id,
                    expiry_seconds=self.limits.expiry_seconds)
                await record_in(connection, caller, upload.name)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.store.abort_multipart(key, store_upload_id))
            raise
        metrics.UPLOAD_TRANSITIONS.labels(state=UploadState.OPEN.value).inc()
        log.info("upload opened", extra={"upload_id": str(upload.id), "namespace": namespace,
                                         "dataset": spec.dataset, "path": spec.path, "part_size": part_size})
        return upload, True

    async def _by_request_id(self, namespace: str, request_id: str) -> Upload | None:
        async with self.db.connection() as connection:
            namespace_id = await namespaces.find_id(connection, namespace)
            if namespace_id is None:
                return None
            return await repo.find_by_request_id(connection, namespace_id, request_id)

    async def discard_new(self, upload: Upload) -> None:
        """Undo a creation whose first stream failed before anything was committed: no row, no bytes."""
        async with self.db.transaction() as connection:
            current = await repo.get(connection, upload.id, for_update=True)
            if current is None or current.state != UploadState.OPEN or current.parts:
                return
            await repo.delete(connection, upload.id)
        if upload.store_upload_id:
            await self.store.abort_multipart(upload.staging_key, upload.store_upload_id)
        log.info("upload discarded", extra={"upload_id": str(upload.id)})

    # --- finishing -----------------------------------------------------------------------------------

    async def complete(self, caller: Caller, name: str, sha256: str | None) -> Upload:
        """Assemble the parts into the staged object; the upload becomes STAGED and validation is queued."""
        upload = await self.load(caller, name)
        return await self.complete_upload(upload, sha256, caller)

    async def complete_upload(self, upload: Upload, sha256: str | None, caller: Caller | None = None) -> Upload:
        """`complete` for an upload already loaded (the call's audit row goes in its transaction)."""
        if sha256 is not None:
            names.sha256_hex(sha256, "sha256")
        async with self.db.transaction() as connection:
            current = await repo.get(connection, upload.id, for_update=True)
            assert current is not None
            if current.state != UploadState.OPEN:
                if current.state in (UploadState.STAGED, UploadState.VALIDATING, UploadState.VALIDATED,
                                     UploadState.PROMOTED) and sha256 in (None, current.sha256):
                    if caller is not None:
                        await record_in(connection, caller, current.name)
                    return current  # completed before: completing again changes nothing
                raise not_open(current)
            if current.declared_sha256 and sha256 and sha256 != current.declared_sha256:
                raise ChecksumMismatch(f"sha256 {sha256} differs from the declared {current.declared_sha256}",
                                       metadata={"declared_sha256": current.declared_sha256})
            size = assemble(current.parts, current.part_size, current.declared_size)
            assert current.store_upload_id is not None
            await self.store.complete_multipart(
                current.staging_key, current.store_upload_id,
                [CompletedPart(p.number, p.etag, p.size) for p in current.parts])
            await repo.transition(connection, current.id, [UploadState.OPEN], UploadState.STAGED,
                                  size_bytes=size, sha256=sha256 or current.declared_sha256)
            if caller is not None:
                await record_in(connection, caller, current.name)
            staged = await repo.get(connection, current.id)
        assert staged is not None
        metrics.UPLOAD_TRANSITIONS.labels(state=UploadState.STAGED.value).inc()
        log.info("upload staged", extra={"upload_id": str(staged.id), "size": size})
        await self.enqueue_validation(staged.id)
        return staged

    async def enqueue_validation(self, upload_id: uuid.UUID) -> bool:
        """Queue `validate_upload` (True if queued now); a failed enqueue is retried, never raised."""
        return await self.queue.enqueue_for("validate_upload", str(upload_id), "upload_id")

    async def cancel(self, caller: Caller, name: str) -> Upload:
        """Cancel an upload that is not yet part of a version, and delete its staged bytes."""
        upload = await self.load(caller, name)
        async with self.db.transaction() as connection:
            current = await repo.get(connection, upload.id, for_update=True)
            assert current is not None
            if current.state == UploadState.CANCELLED:
                await record_in(connection, caller, current.name)
                return current
            if current.state not in UPLOAD_CANCELLABLE_STATES or current.version_id is not None:
                raise WrongState(f"upload {name} is {current.state} and cannot be cancelled",
                                 state=current.state.value, reason="UPLOAD_NOT_CANCELLABLE")
            await repo.transition(connection, current.id, UPLOAD_CANCELLABLE_STATES, UploadState.CANCELLED)
            await record_in(connection, caller, current.name)
        metrics.UPLOAD_TRANSITIONS.labels(state=UploadState.CANCELLED.value).inc()
        await self.purge(current)
        async with self.db.connection() as connection:
            cancelled = await repo.get(connection, upload.id)
        assert cancelled is not None
        return cancelled

    async def fail_open(self, upload: Upload, error: QuarryError) -> None:
        """An OPEN upload that can never finish (e.g. over the size limit): FAILED, and its bytes deleted."""
        async with self.db.transaction() as connection:
            moved = await repo.transition(connection, upload.id, [UploadState.OPEN], UploadState.FAILED,
                                          failure=Failure.of(error))
        if moved:
            metrics.UPLOAD_TRANSITIONS.labels(state=UploadState.FAILED.value).inc()
            await self.purge(upload)

    async def purge(self, upload: Upload) -> None:
        """Delete the staged bytes of a cancelled or expired upload (idempotent; the sweep retries it)."""
        if upload.store_upload_id:
            await self.store.abort_multipart(upload.staging_key, upload.store_upload_id)
        await self.store.delete(upload.staging_key)
        async with self.db.connection() as connection:
            await repo.mark_purged(connection, upload.id)

    async def retry(self, caller: Caller, name: str) -> Upload:
        """Re-run a FAILED validation or promotion whose cause was transient (a dependency was down)."""
        upload = await self.load(caller, name)
        async with self.db.transaction() as connection:
            current = await repo.get(connection, upload.id, for_update=True)
            assert current is not None
            if current.state != UploadState.FAILED:
                raise WrongState(f"upload {name} is {current.state}, not FAILED", state=current.state.value,
                                 reason="UPLOAD_NOT_FAILED")
            if current.failure is None or not current.failure.retryable:
                reason = current.failure.reason if current.failure else "UNKNOWN"
                raise FailedPrecondition(f"upload {name} failed for good ({reason}); fix the file and upload it "
                                         "again", reason="NOT_RETRYABLE", metadata={"failure_reason": reason})
            validated = await repo.is_validated(connection, current.id)
            state = UploadState.VALIDATED if validated else UploadState.STAGED
            await repo.transition(connection, current.id, [UploadState.FAILED], state)
            if current.version_id is not None:
                await versions_repo.transition(connection, current.version_id, [VersionState.FAILED],
                                               VersionState.PENDING)
            await record_in(connection, caller, current.name)
            retried = await repo.get(connection, current.id)
        assert retried is not None
        metrics.UPLOAD_TRANSITIONS.labels(state=state.value).inc()
        log.info("upload retried", extra={"upload_id": str(upload.id), "state": state.value})
        # validate_upload validates a STAGED upload, and for a VALIDATED one re-runs what follows.
        await self.enqueue_validation(retried.id)
        return retried

    # --- following -----------------------------------------------------------------------------------

    async def watch(self, caller: Caller, name: str) -> AsyncIterator[Upload]:
        """The upload now, then at every state change, until a final state."""
        upload = await self.load(caller, name)

        async def read() -> Upload | None:
            async with self.db.connection() as connection:
                return await repo.get(connection, upload.id)

        async for current in follow(self.hub, UPLOAD_CHANNEL, str(upload.id), read, lambda u: u.state.value,
                                    lambda u, state: dataclasses.replace(u, state=UploadState(state)),
                                    {s.value for s in UPLOAD_FINAL_STATES}):
            yield current


# Why an upload takes no more bytes and joins no version: the error of a write to it, and the failure of a
# version it was part of.
ENDED_REASONS = {UploadState.CANCELLED: "UPLOAD_CANCELLED", UploadState.EXPIRED: "UPLOAD_EXPIRED",
                 UploadState.FAILED: "UPLOAD_FAILED"}


def not_open(upload: Upload) -> WrongState:
    """The error for writing to (or completing) an upload that is no longer OPEN."""
    reason = ENDED_REASONS.get(upload.state, "UPLOAD_FINISHED")
    return WrongState(f"upload {upload.name} is {upload.state}, not OPEN", state=upload.state.value, reason=reason)
