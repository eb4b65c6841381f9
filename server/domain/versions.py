"""Versions: commit a change, read a version, list a dataset's history.

A commit names its base, the uploads to add or replace and the paths to delete. It is accepted as a
PENDING version bound to its uploads; `promote_version` (in the worker) builds it once every upload is
validated. A commit whose base is not current is refused at once when the same paths changed since;
promotion checks again under the dataset's lock.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from server.domain.audit import record_in
from server.domain.caller import Caller
from server.domain.listing import PageTokens, page_size
from server.domain.watch import follow
from server.model import names
from server.model.errors import BaseMoved, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from server.model.uploads import Upload, UploadState
from server.model.versions import VERSION_FINAL_STATES, DatasetHead, Version, VersionState
from server.storage import uploads as uploads_repo
from server.storage import versions as repo
from server.storage.db import Connection, Database
from server.storage.jobqueue import JobQueue
from server.storage.notifications import VERSION_CHANNEL, NotificationHub

log = logging.getLogger(__name__)

MAX_MESSAGE = 16384
MAX_CHANGES = 10_000
# Most files one GetVersion (view FULL) or DiffVersions answer carries: beyond, the message outgrows what a
# plain gRPC client accepts (4 MiB by default). ListVersionFiles pages through any number.
MAX_LISTED_FILES = 10_000
ANSWER_BYTES = 3 << 20
FOLLOW_UP_SECONDS = 1.0
COMMITTABLE = frozenset({UploadState.STAGED, UploadState.VALIDATING, UploadState.VALIDATED})


@dataclass(frozen=True)
class Change:
    """What a commit asks for."""

    uploads: tuple[uuid.UUID, ...]
    delete_paths: tuple[str, ...]
    message: str
    request_id: str | None
    author: str


class Versions:
    """Version use cases."""

    def __init__(self, db: Database, queue: JobQueue, hub: NotificationHub, page_tokens: PageTokens,
                 max_page_size: int) -> None:
        self.db = db
        self.queue = queue
        self.hub = hub
        self._tokens = page_tokens
        self._max_page_size = max_page_size

    # --- reading -------------------------------------------------------------------------------------

    async def dataset(self, caller: Caller, name: str, field: str = "parent") -> DatasetHead:
        """The live dataset a resource name names."""
        ref = names.parse_dataset(name, field)
        caller.check(ref.namespace)
        async with self.db.connection() as connection:
            head = await repo.dataset_head(connection, ref.namespace, ref.dataset)
        if head is None:
            raise NotFound(f"dataset {ref.name} not found", reason="DATASET_NOT_FOUND")
        return head

    async def resolve(self, caller: Caller, name: str, field: str = "name") -> uuid.UUID:
        """The id of the version a resource name names (by number, uid or "latest")."""
        ref = names.parse_version(name, field)
        caller.check(ref.dataset.namespace)
        async with self.db.connection() as connection:
            return await self._resolve(connection, ref, name)

    async def resolve_in(self, connection: Connection, ref: names.VersionRef, name: str) -> uuid.UUID:
        """`resolve` inside the caller's transaction (its namespace already checked)."""
        return await self._resolve(connection, ref, name)

    async def _resolve(self, connection: Connection, ref: names.VersionRef, name: str) -> uuid.UUID:
        head = await repo.dataset_head(connection, ref.dataset.namespace, ref.dataset.dataset)
        if head is None:
            raise NotFound(f"dataset {ref.dataset.name} not found", reason="DATASET_NOT_FOUND")
        if ref.latest:
            if head.current_version_id is None:
                raise NotFound(f"dataset {ref.dataset.name} has no version yet", reason="VERSION_NOT_FOUND")
            return head.current_version_id
        if ref.number is not None:
            found = await repo.id_by_number(connection, head.id, ref.number)
        else:
            version = await repo.get(connection, ref.uid) if ref.uid else None
            found = version.id if version is not None and version.dataset_id == head.id else None
        if found is None:
            raise NotFound(f"version {name} not found", reason="VERSION_NOT_FOUND")
        return found

    async def get(self, caller: Caller, name: str, field: str = "name", *, with_files: bool = False) -> Version:
        """A version (with its files, each with its columns and report, when `with_files`)."""
        version_id = await self.resolve(caller, name, field)
        async with self.db.connection() as connection:
            version = await repo.get(connection, version_id)
            assert version is not None
            if with_files and version.file_count > MAX_LISTED_FILES:
                raise FailedPrecondition(
                    f"version {version.name} has {version.file_count} files, more than one answer lists (at most "
                    f"{MAX_LISTED_FILES}); page through ListVersionFiles instead", reason="TOO_MANY_FILES",
                    metadata={"file_count": str(version.file_count), "max_files": str(MAX_LISTED_FILES)})
            if with_files:
                version = await repo.get(connection, version_id, with_files=True)
        assert version is not None
        if sum(f.approx_bytes(full=True) for f in version.files) > ANSWER_BYTES:
            raise FailedPrecondition(f"the files of version {version.name} with their schemas take more than one "
                                     f"answer holds ({ANSWER_BYTES >> 20} MiB); page through ListVersionFiles instead",
                                     reason="TOO_MANY_FILES", metadata={"file_count": str(version.file_count)})
        return version

    async def watch(self, caller: Caller, name: str) -> AsyncIterator[Version]:
        """The version now, then at every state change, until READY or FAILED (without its files)."""
        version_id = await self.resolve(caller, name)

        async def read() -> Version | None:
            async with self.db.connection() as connection:
                return await repo.get(connection, version_id)

        async for current in follow(self.hub, VERSION_CHANNEL, str(version_id), read, lambda v: v.state.value,
                                    lambda v, state: dataclasses.replace(v, state=VersionState(state)),
                                    {s.value for s in VERSION_FINAL_STATES}):
            yield current

    async def history(self, caller: Caller, parent: str, size: int, token: str) -> tuple[list[Version], str]:
        """A page of a dataset's versions, newest first."""
        head = await self.dataset(caller, parent)
        limit = page_size(size, self._max_page_size)
        request = (str(head.id),)
        after = self._tokens.decode_time_id(token, request)
        async with self.db.connection() as connection:
            found = await repo.page(connection, head.id, after, limit + 1)
        page, more = found[:limit], len(found) > limit
        token_out = self._tokens.encode_time_id(page[-1].create_time, page[-1].id, request) if more else ""
        return page, token_out

    # --- committing ----------------------------------------------------------------------------------

    async def commit(self, caller: Caller, parent: str, base: str, upload_names: list[str], delete_paths: list[str],
                     message: str, request_id: str) -> Version:
        """Accept a change as a PENDING version and queue its promotion."""
        ref = names.parse_dataset(parent, "parent")
        caller.check(ref.namespace)
        upload_ids = []
        for index, upload_name in enumerate(upload_names):
            namespace, upload_id = names.parse_upload(upload_name, f"uploads[{index}]")
            caller.check(namespace)
            upload_ids.append(upload_id)
        change = Change(tuple(upload_ids), tuple(delete_paths), message, request_id or None, caller.identity)
        _check_change(change)
        async with self.db.transaction() as connection:
            head = await repo.dataset_head(connection, ref.namespace, ref.dataset, for_update=True)
            if head is None or head.state == "DELETED":
                raise NotFound(f"dataset {ref.name} not found", reason="DATASET_NOT_FOUND")
            base_id = head.current_version_id
            if base:
                base_ref = names.parse_version(base, "base_version")
                if base_ref.dataset != ref:
                    raise InvalidArgument.field("base_version", f"{base} is not a version of {ref.name}")
                base_id = await self._resolve(connection, base_ref, base)
            version_id = await self.commit_in(connection, head, base_id, change)
            await record_in(connection, caller, names.version_name(ref.namespace, ref.dataset, version_id))
        await self.enqueue_promotion(version_id)
        async with self.db.connection() as connection:
            version = await repo.get(connection, version_id)
        assert version is not None
        return version

    async def commit_in(self, connection: Connection, head: DatasetHead, base_id: uuid.UUID | None,
                        change: Change) -> uuid.UUID:
        """The commit itself, inside the caller's transaction holding the dataset's lock."""
        if change.request_id is not None:
            existing = await repo.find_by_request_id(connection, head.id, change.request_id)
            if existing is not None:
                return existing
        uploads = await uploads_repo.lock_for_commit(connection, change.uploads)
        _check_uploads(head, change, uploads)
        added = [u.path for u in uploads]
        if base_id is not None:
            base_paths = {f.path for f in await repo.files(connection, base_id)}
            missing = [p for p in change.delete_paths if p not in base_paths]
            if missing:
                raise FailedPrecondition(f"path {missing[0]!r} is not in the base version", reason="PATH_NOT_FOUND",
                                         metadata={"path": missing[0]})
        elif change.delete_paths:
            raise FailedPrecondition(f"path {change.delete_paths[0]!r} is not in the base version (there is none)",
                                     reason="PATH_NOT_FOUND", metadata={"path": change.delete_paths[0]})
        if base_id != head.current_version_id:
            moved = await repo.changed_paths(connection, base_id, head.current_version_id)
            conflict = sorted(moved & (set(added) | set(change.delete_paths)))
            if conflict:
                raise BaseMoved(f"the dataset moved on since the base version and {conflict[0]!r} changed there too",
                                metadata={"paths": ",".join(conflict[:20])})
        version_id = await repo.insert(connection, dataset_id=head.id, base_id=base_id, message=change.message,
                                       author=change.author, request_id=change.request_id,
                                       delete_paths=change.delete_paths)
        bound = await uploads_repo.bind(connection, version_id, change.uploads)
        if bound != len(change.uploads):
            raise FailedPrecondition("an upload joined another version meanwhile", reason="UPLOAD_IN_OTHER_VERSION")
        log.info("version committed", extra={"version_id": str(version_id), "dataset": head.name,
                                             "uploads": len(change.uploads), "deletes": len(change.delete_paths)})
        return version_id

    async def enqueue_promotion(self, version_id: uuid.UUID, *, after_change: bool = False) -> bool:
        """Queue `promote_version` (True if queued now); a failed enqueue is retried in the background, never
        raised (the requeue cron covers one lost for good).

        `after_change`: one of the version's uploads just changed state. A promotion running at this moment may
        have read the uploads before the change, and the queue drops an enqueue of a job id that is running (the
        change would then wait for the requeue cron), so a follow-up under an id of its own runs a moment later.
        A promotion with nothing to do does nothing."""
        queued = await self.queue.enqueue_for("promote_version", str(version_id), "version_id")
        if after_change:
            try:
                await self.queue.enqueue("promote_version", str(version_id), delay=FOLLOW_UP_SECONDS,
                                         job_id=f"promote_version:{version_id}:{uuid.uuid4().hex[:12]}")
            except Unavailable as exc:
                log.warning("could not enqueue a follow-up promotion; the requeue cron will",
                            extra={"version_id": str(version_id), "error": str(exc)})
        return queued


def _check_change(change: Change) -> None:
    if not change.uploads and not change.delete_paths:
        raise InvalidArgument.field("uploads", "a commit needs at least one upload or one path to delete",
                                    reason="EMPTY_COMMIT")
    if len(change.uploads) + len(change.delete_paths) > MAX_CHANGES:
        raise InvalidArgument.field("uploads", f"at most {MAX_CHANGES} changes (uploads and paths to delete) per "
                                    "commit", reason="COMMIT_TOO_LARGE")
    if len(set(change.uploads)) != len(change.uploads):
        raise InvalidArgument.field("uploads", "an upload is named twice", reason="DUPLICATE_UPLOAD")
    for index, path in enumerate(change.delete_paths):
        names.file_path(path, f"delete_paths[{index}]")
    if len(set(change.delete_paths)) != len(change.delete_paths):
        raise InvalidArgument.field("delete_paths", "a path is named twice", reason="DUPLICATE_PATH")
    if len(change.message) > MAX_MESSAGE:
        raise InvalidArgument.field("message", f"at most {MAX_MESSAGE} characters")
    if change.request_id is not None and not 1 <= len(change.request_id) <= 128:
        raise InvalidArgument.field("request_id", "must have 1-128 characters")


def _check_uploads(head: DatasetHead, change: Change, uploads: list[Upload]) -> None:
    found = {u.id: u for u in uploads}
    for upload_id in change.uploads:
        upload = found.get(upload_id)
        if upload is None or upload.namespace != head.namespace:
            raise NotFound(f"upload {upload_id} not found", reason="UPLOAD_NOT_FOUND")
        if upload.dataset_id != head.id:
            raise FailedPrecondition(f"upload {upload.name} targets dataset {upload.dataset!r}, not {head.name!r}",
                                     reason="UPLOAD_OTHER_DATASET")
        if upload.version_id is not None:
            raise FailedPrecondition(f"upload {upload.name} is already part of a version",
                                     reason="UPLOAD_IN_OTHER_VERSION")
        if upload.state not in COMMITTABLE:
            raise FailedPrecondition(f"upload {upload.name} is {upload.state}; only STAGED, VALIDATING or VALIDATED "
                                     "uploads can be committed", reason="UPLOAD_NOT_COMMITTABLE",
                                     metadata={"state": upload.state.value})
    paths = [found[i].path for i in change.uploads]
    if len(set(paths)) != len(paths):
        raise InvalidArgument.field("uploads", "two uploads have the same path", reason="DUPLICATE_PATH")
    both = set(paths) & set(change.delete_paths)
    if both:
        raise InvalidArgument.field("delete_paths", f"{sorted(both)[0]!r} is both added and deleted",
                                    reason="DUPLICATE_PATH")
