"""WriteFile: a small file kept inline in Postgres, committed as a new READY version in the same call.

Configs, JSON and notes are read far more often than they are large: a round trip to Postgres serves them
faster than the object store, and writing one needs no upload session, no worker and no second call. The
content (at most QUARRY_INLINE_MAX_BYTES) is validated exactly as an upload is (format, schema, statistics,
the dataset's rules) before anything is written; then one transaction under the dataset's lock stores it
(`inline_objects`, keyed by namespace and sha256 like a fresh object), and makes the next version: the
current version's files with this path added or replaced. A refusal writes nothing.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from server.domain import quotas
from server.domain.audit import record_in
from server.domain.caller import Caller
from server.domain.namespaces import existing_namespace
from server.domain.validation import validate_object
from server.domain.validation.rules import RULE_CODES
from server.domain.versions import MAX_MESSAGE, Versions
from server.model import names
from server.model.errors import BaseMoved, InvalidArgument, InvalidFile, NotFound, ResourceExhausted, RuleViolation
from server.model.report import ColumnInfo, Report
from server.model.versions import FileReport, Version, VersionFile
from server.storage import versions as repo
from server.storage.db import Database
from server.storage.objects.memory import BytesObject
from server.storage.objects.routed import inline_key, store_inline

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InlineWrite:
    """What WriteFile asks for."""

    parent: str
    path: str
    content: bytes
    content_type: str = ""
    message: str = ""
    base_version: str = ""
    request_id: str | None = None


def _refusal(report: Report, path: str) -> InvalidFile | RuleViolation:
    issue = report.errors[0]
    kind = RuleViolation if issue.code in RULE_CODES else InvalidFile
    more = f" (and {report.error_count - 1} more)" if report.error_count > 1 else ""
    return kind(f"{path}: {issue.message}{more}", reason=issue.code, metadata={"path": path})


class InlineWrites:
    """The WriteFile use case."""

    def __init__(self, db: Database, versions: Versions, max_bytes: int,
                 dataset_changed: Callable[[str], None]) -> None:
        self.db = db
        self.versions = versions
        self.max_bytes = max_bytes
        self._changed = dataset_changed  # Datasets.changed: the new current version shows at once here

    def _check(self, request: InlineWrite) -> None:
        names.file_path(request.path, "path")
        if len(request.content) > self.max_bytes:
            raise ResourceExhausted(
                f"content has {len(request.content)} bytes; a file written inline may have at most {self.max_bytes} "
                "(QUARRY_INLINE_MAX_BYTES): upload a larger file instead", reason="INLINE_TOO_LARGE",
                metadata={"size": str(len(request.content)), "limit": str(self.max_bytes)})
        if len(request.message) > MAX_MESSAGE:
            raise InvalidArgument.field("message", f"at most {MAX_MESSAGE} characters", reason="INVALID_MESSAGE")
        if len(request.content_type) > 255:
            raise InvalidArgument.field("content_type", "at most 255 characters", reason="INVALID_CONTENT_TYPE")
        if request.request_id is not None and not 1 <= len(request.request_id) <= 128:
            raise InvalidArgument.field("request_id", "must have 1-128 characters", reason="INVALID_REQUEST_ID")

    async def write(self, caller: Caller, request: InlineWrite) -> Version:
        """Validate the content, keep it, and commit the version holding it (READY when this returns)."""
        ref = names.parse_dataset(request.parent, "parent")
        caller.check(ref.namespace)
        self._check(request)
        head = await self.versions.dataset(caller, request.parent)
        previous: tuple[ColumnInfo, ...] | None = None
        async with self.db.connection() as connection:
            if request.request_id is not None:
                earlier = await repo.find_by_request_id(connection, head.id, request.request_id)
                if earlier is not None:
                    return await self._replayed(earlier)
            if head.current_version_id is not None:
                existing = await repo.file(connection, head.current_version_id, request.path)
                previous = existing.columns if existing is not None else None
        report = await validate_object(BytesObject(request.content), "inline", len(request.content), request.path,
                                       request.content_type, head.rules, previous)
        if not report.ok:
            raise _refusal(report, request.path)
        key = inline_key(ref.namespace, report.sha256)
        file = VersionFile(
            path=request.path, object_key=key, size=len(request.content), sha256=report.sha256, format=report.format,
            content_type=request.content_type, columns=tuple(report.columns), row_count=report.row_count,
            report=FileReport.from_json(report.to_json()), stats=tuple(report.stats), arrow_schema=report.arrow_schema)
        async with self.db.transaction() as connection:
            locked = await repo.dataset_head_by_id(connection, head.id, for_update=True)
            if locked is None or locked.state == "DELETED":
                raise NotFound(f"dataset {ref.name} not found", reason="DATASET_NOT_FOUND")
            if request.request_id is not None:
                earlier = await repo.find_by_request_id(connection, head.id, request.request_id)
                if earlier is not None:
                    return await self._replayed(earlier)
            base_id = locked.current_version_id
            if request.base_version:
                base_ref = names.parse_version(request.base_version, "base_version")
                if base_ref.dataset != ref:
                    raise InvalidArgument.field("base_version", f"{request.base_version} is not a version of "
                                                                f"{ref.name}", reason="INVALID_BASE_VERSION")
                base_id = await self.versions.resolve_in(connection, base_ref, request.base_version)
            if base_id != locked.current_version_id and request.path in await repo.changed_paths(
                    connection, base_id, locked.current_version_id):
                raise BaseMoved(f"the dataset moved on since the base version and {request.path!r} changed there too",
                                metadata={"paths": request.path})
            space = await existing_namespace(connection, ref.namespace)
            await quotas.check_bytes(connection, space, file.size)
            await repo.touch_object(connection, key=key, namespace_id=space.id, dataset_id=head.id,
                                    sha256=file.sha256, size=file.size)
            await store_inline(connection, key, request.content)
            version_id = await repo.insert_ready(
                connection, dataset_id=head.id, number=(locked.current_number or 0) + 1, base_id=base_id,
                parent_id=locked.current_version_id, message=request.message or f"write {request.path}",
                author=caller.identity, request_id=request.request_id)
            if locked.current_version_id is not None:
                await repo.copy_files(connection, locked.current_version_id, version_id, [request.path])
            await repo.insert_files(connection, version_id, [file])
            await repo.set_totals(connection, version_id)
            await repo.set_current(connection, head.id, version_id)
            version = await repo.get(connection, version_id)
            assert version is not None
            await record_in(connection, caller, version.name)
        self._changed(ref.name)
        log.info("inline file written", extra={"dataset": ref.name, "path": request.path, "size": file.size,
                                               "number": version.number})
        return version

    async def _replayed(self, version_id: uuid.UUID) -> Version:
        """The version an earlier request with the same request_id made."""
        async with self.db.connection() as connection:
            version = await repo.get(connection, version_id)
        assert version is not None
        return version
