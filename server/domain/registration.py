"""RegisterFiles: a version of objects that already exist elsewhere, listed and validated, not uploaded.

The call checks the source at once (a scheme this server reads, a local directory inside QUARRY_REGISTER_ROOTS,
at least one object the filters take, readable with the server's credentials) and answers a PENDING version; the
worker's `promote_version` then builds it (`build`): it lists the objects again, validates each by streaming it
through pinned reads (sha256, format, schema, statistics, the dataset's rules: the bytes validated are the bytes
pinned), and commits one version whose files point at the objects (`external/…` keys, ETag and version id kept)
or, with `copy`, at copies in fresh storage. One refused object fails the version; a refusal at the call
leaves nothing.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from server.domain.audit import record_in
from server.domain.caller import Caller
from server.domain.renditions import Renditions, fresh_key
from server.domain.validation import validate_object
from server.domain.validation.rules import RULE_CODES
from server.domain.versions import MAX_MESSAGE, Versions
from server.model import names
from server.model.datasets import DatasetRules
from server.model.errors import InvalidArgument, InvalidFile, NotFound, QuarryError, RuleViolation
from server.model.failures import Failure
from server.model.objects import ObjectStore
from server.model.registration import ExternalObject, Registration
from server.model.report import Report
from server.model.versions import FileReport, Version, VersionFile, VersionState
from server.storage import versions as repo
from server.storage.db import Database
from server.storage.objects.external import ExternalSources, PinnedObject

log = logging.getLogger(__name__)

MAX_GLOBS = 64
MAX_REGISTERED = 10_000

FailVersion = Callable[[Version, Failure], Awaitable[None]]


@dataclass(frozen=True)
class RegisterRequest:
    """What RegisterFiles asks for."""

    parent: str
    registration: Registration
    message: str = ""
    request_id: str | None = None

    def validated(self) -> RegisterRequest:
        """Check the filters, the destination prefix, the message and the request id."""
        spec = self.registration
        if len(spec.include) + len(spec.exclude) > MAX_GLOBS or any(not g for g in (*spec.include, *spec.exclude)):
            raise InvalidArgument.field("include", f"at most {MAX_GLOBS} non-empty globs", reason="INVALID_FILTER")
        if spec.path_prefix:
            names.file_path(spec.path_prefix.rstrip("/"), "path_prefix")
        if len(self.message) > MAX_MESSAGE:
            raise InvalidArgument.field("message", f"at most {MAX_MESSAGE} characters", reason="INVALID_MESSAGE")
        if self.request_id is not None and not 1 <= len(self.request_id) <= 128:
            raise InvalidArgument.field("request_id", "must have 1-128 characters", reason="INVALID_REQUEST_ID")
        return self


def _refusal(report: Report, path: str) -> QuarryError:
    issue = report.errors[0]
    kind = RuleViolation if issue.code in RULE_CODES else InvalidFile
    return kind(f"{path}: {issue.message}", reason=issue.code)


def _path(spec: Registration, item: ExternalObject) -> str:
    prefix = spec.path_prefix.rstrip("/")
    return f"{prefix}/{item.relative}" if prefix else item.relative


class Registrations:
    """The RegisterFiles call, and the build of its version."""

    def __init__(self, db: Database, versions: Versions, sources: ExternalSources, store: ObjectStore) -> None:
        self.db = db
        self.versions = versions
        self.sources = sources
        self.store = store
        self.renditions = Renditions(db, store)

    async def _taken(self, spec: Registration) -> AsyncIterator[ExternalObject]:
        async for item in self.sources.listing(self.sources.parse(spec.source_uri)):
            if spec.wants(item.relative):
                yield item

    async def register(self, caller: Caller, request: RegisterRequest) -> Version:
        """Check the source and accept the registration as a PENDING version (built by the worker)."""
        ref = names.parse_dataset(request.parent, "parent")
        caller.check(ref.namespace)
        request = request.validated()
        spec = request.registration
        self.sources.parse(spec.source_uri)  # a scheme this server reads, a directory it may read
        head = await self.versions.dataset(caller, request.parent)
        first = await anext(aiter(self._taken(spec)), None)
        if first is None:
            raise NotFound(f"{spec.source_uri} holds no object the filters take", reason="SOURCE_NOT_FOUND",
                           metadata={"uri": spec.source_uri})
        await self.sources.pinned(first).read_range("", 0, 1)  # readable with the server's credentials
        async with self.db.transaction() as connection:
            locked = await repo.dataset_head_by_id(connection, head.id, for_update=True)
            if locked is None or locked.state == "DELETED":
                raise NotFound(f"dataset {ref.name} not found", reason="DATASET_NOT_FOUND")
            earlier = (await repo.find_by_request_id(connection, head.id, request.request_id)
                       if request.request_id is not None else None)
            version_id = earlier or await repo.insert(
                connection, dataset_id=head.id, base_id=locked.current_version_id,
                message=request.message or f"register {spec.source_uri}", author=caller.identity,
                request_id=request.request_id, delete_paths=())
            if earlier is None:
                await repo.set_registration(connection, version_id, spec)
            version = await repo.get(connection, version_id)
            assert version is not None
            await record_in(connection, caller, version.name)
        await self.versions.enqueue_promotion(version_id)
        log.info("registration accepted", extra={"version_id": str(version_id), "source": spec.source_uri})
        return version

    async def build(self, version: Version, fail: FailVersion) -> list[VersionFile] | None:
        """List, validate and land the registered objects; their version files (None: the version failed)."""
        spec = version.registration
        assert spec is not None
        async with self.db.transaction() as connection:
            await repo.transition(connection, version.id, [VersionState.PENDING], VersionState.VALIDATING)
            head = await repo.dataset_head_by_id(connection, version.dataset_id)
        assert head is not None
        entries: list[VersionFile] = []
        path = ""
        try:
            items = [item async for item in self._taken(spec)]
            if len(items) > MAX_REGISTERED:
                raise InvalidArgument(f"{spec.source_uri} holds {len(items)} objects the filters take, more than one "
                                      f"version registers ({MAX_REGISTERED}): register it in parts",
                                      reason="TOO_MANY_FILES_TO_REGISTER")
            if not items:
                raise NotFound(f"{spec.source_uri} holds no object the filters take", reason="SOURCE_NOT_FOUND")
            # Every object is validated before any is landed: a refusal leaves no row and no copy behind.
            checked = []
            for item in items:
                path = _path(spec, item)
                checked.append(await self._validate(version, head.rules, spec, item))
            for pinned, report in checked:
                path = _path(spec, pinned.item)
                entries.append(await self._land(version, head.namespace_id, head.rules, spec, pinned, report))
        except QuarryError as exc:
            if exc.retryable:
                raise  # the job is tried again
            await fail(version, Failure.of(exc, path))
            return None
        return entries

    async def _validate(self, version: Version, rules: DatasetRules, spec: Registration,
                        item: ExternalObject) -> tuple[PinnedObject, Report]:
        """One object validated by streaming it through reads pinned to what was listed."""
        path = names.file_path(_path(spec, item), "path")
        pinned = self.sources.pinned(ExternalObject(item.uri, item.etag, item.size, item.relative,
                                                    await self.sources.version_id(item)))
        async with self.db.connection() as connection:
            existing = await repo.file(connection, version.base_id, path) if version.base_id else None
        report = await validate_object(pinned, "", item.size, path, "", rules,
                                       existing.columns if existing is not None else None)
        if not report.ok:
            raise _refusal(report, path)
        return pinned, report

    async def _land(self, version: Version, namespace_id: uuid.UUID, rules: DatasetRules, spec: Registration,
                    pinned: PinnedObject, report: Report) -> VersionFile:
        """One validated object as a version file: pointed at (its pin recorded) or copied in."""
        item = pinned.item
        if spec.copy:
            key = fresh_key(version.namespace, version.dataset_id, report.sha256)
            async with self.db.connection() as connection:
                await repo.touch_object(connection, key=key, namespace_id=namespace_id, dataset_id=version.dataset_id,
                                        sha256=report.sha256, size=item.size)
            if not await self.store.exists(key):
                await self.store.put(key, pinned.read())
        else:
            key = item.key(report.sha256)
            async with self.db.connection() as connection:
                await repo.touch_external(connection, key=key, namespace_id=namespace_id,
                                          dataset_id=version.dataset_id, sha256=report.sha256, item=item)
        file = VersionFile(path=_path(spec, item), object_key=key, size=item.size, sha256=report.sha256,
                           format=report.format, content_type="", columns=tuple(report.columns),
                           row_count=report.row_count, report=FileReport.from_json(report.to_json()),
                           stats=tuple(report.stats), arrow_schema=report.arrow_schema)
        if rules.normalize_to_parquet:
            file = await self.renditions.render(version.namespace, namespace_id, version.dataset_id, file)
        return file
