"""A dataset's life beyond create/update/delete: cloning one, and undeleting one within the retention period.

A clone is metadata only. Its version 1 is READY at once, in one transaction, and lists the same
content-addressed objects as the source version (`version_files` rows copied by one INSERT … SELECT): no byte
moves, however large the version. The garbage collector deletes an object only when no version lists it, so
an object stays while any clone (or the source) still does; after the source is deleted and purged, its
objects stay for as long as a clone lists them.

Undelete restores the last deleted dataset of a name while its deletion is younger than the retention
period (QUARRY_DELETED_RETENTION_DAYS); the sweep purges older ones (see `sweep.py`). Both compare ages in
Postgres (one clock), under the dataset's row lock, so an undelete and a purge never both win.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from server.domain import quotas
from server.domain.audit import record_in
from server.domain.caller import Caller
from server.domain.datasets import MAX_REQUEST_ID
from server.domain.namespaces import existing_namespace
from server.domain.versions import Versions
from server.model import names
from server.model.datasets import Dataset
from server.model.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, WrongState
from server.model.identity import Role
from server.model.versions import Version, VersionState
from server.storage import datasets as datasets_repo
from server.storage import sweeping
from server.storage import versions as versions_repo
from server.storage.db import Connection, Database

log = logging.getLogger(__name__)

DAY_SECONDS = 86400.0
MAX_MESSAGE = 16384


@dataclass(frozen=True)
class CloneRequest:
    """What CloneDataset asks for."""

    source: str  # a dataset (its current version) or a version resource name
    parent: str
    name: str
    message: str = ""
    request_id: str | None = None

    def source_version(self) -> str:
        """The source as a version resource name (a dataset's means its current version)."""
        if "/versions/" in self.source:
            return self.source
        names.parse_dataset(self.source, "source")
        return f"{self.source}/versions/latest"

    def validated(self) -> CloneRequest:
        """Check the new name, the message and the request id."""
        names.dataset_name(self.name, "dataset_id")
        if len(self.message) > MAX_MESSAGE:
            raise InvalidArgument.field("message", f"at most {MAX_MESSAGE} characters", reason="INVALID_MESSAGE")
        if self.request_id is not None and not 1 <= len(self.request_id) <= MAX_REQUEST_ID:
            raise InvalidArgument.field("request_id", f"must have 1-{MAX_REQUEST_ID} characters",
                                        reason="INVALID_REQUEST_ID")
        return self


class Lifecycle:
    """CloneDataset and UndeleteDataset."""

    def __init__(self, db: Database, versions: Versions, deleted_retention_days: float,
                 dataset_changed: Callable[[str], None]) -> None:
        self.db = db
        self.versions = versions
        self.retention_seconds = deleted_retention_days * DAY_SECONDS
        self._changed = dataset_changed  # Datasets.changed: this replica's cached copy goes at once

    async def clone(self, caller: Caller, request: CloneRequest) -> tuple[Dataset, Version]:
        """A new dataset whose version 1 lists the files of the source version (READY); nothing is copied."""
        request = request.validated()
        namespace = caller.parent(request.parent)  # the writer role, from the access table
        source_name = request.source_version()
        ref = names.parse_version(source_name, "source")
        caller.check(ref.dataset.namespace, Role.READER)
        caller.call.namespace = namespace
        resource = f"namespaces/{namespace}/datasets/{request.name}"
        caller.call.resource = resource
        async with self.db.transaction() as connection:
            space = await existing_namespace(connection, namespace)
            if request.request_id is not None:
                earlier = await datasets_repo.find_by_request_id(connection, space.id, request.request_id)
                if earlier is not None:
                    return await self._replayed(connection, caller, earlier, request)
            source = await versions_repo.get(connection, await self.versions.resolve_in(connection, ref, source_name))
            assert source is not None
            if source.state != VersionState.READY:
                raise WrongState(f"version {source.name} is {source.state.value}; only a READY version can be "
                                 "cloned", state=source.state.value, reason="VERSION_NOT_READY")
            origin = await datasets_repo.get(connection, source.dataset_id)
            assert origin is not None
            await quotas.check_datasets(connection, space)
            created = await datasets_repo.insert(connection, namespace_id=space.id, name=request.name,
                                                 description=origin.description, labels=origin.labels,
                                                 rules=origin.rules, request_id=request.request_id)
            if created is None:
                raise AlreadyExists(f"dataset {resource} already exists", reason="DATASET_ALREADY_EXISTS")
            version_id = await versions_repo.insert_ready(
                connection, dataset_id=created.id, number=1, base_id=None, parent_id=None,
                message=request.message or f"clone of {source.name}", author=caller.identity, request_id=None,
                cloned_from=source.name)
            files = await versions_repo.copy_files(connection, source.id, version_id, same_dataset=False)
            await versions_repo.set_totals(connection, version_id)
            await versions_repo.set_current(connection, created.id, version_id)
            await record_in(connection, caller, resource)
            dataset = await datasets_repo.get(connection, created.id)
            version = await versions_repo.get(connection, version_id)
        assert dataset is not None and version is not None
        self._changed(resource)
        log.info("dataset cloned", extra={"dataset_id": str(dataset.id), "dataset": resource, "source": source.name,
                                          "files": files})
        return dataset, version

    @staticmethod
    async def _replayed(connection: Connection, caller: Caller, earlier: Dataset,
                        request: CloneRequest) -> tuple[Dataset, Version]:
        """The answer of the first request with this request_id."""
        if earlier.name != request.name:
            raise InvalidArgument.field("request_id", f"was already used to create dataset {earlier.name!r}",
                                        reason="REQUEST_ID_REUSED")
        first = await versions_repo.id_by_number(connection, earlier.id, 1)
        version = await versions_repo.get(connection, first) if first is not None else None
        if version is None:
            raise NotFound(f"dataset {earlier.resource_name} has no version 1 any more", reason="VERSION_NOT_FOUND")
        await record_in(connection, caller, earlier.resource_name)
        return earlier, version

    async def undelete(self, caller: Caller, name: str) -> Dataset:
        """The dataset of that name deleted last, live again with its versions, if within the retention period."""
        ref = names.parse_dataset(name, "name")
        caller.check(ref.namespace)
        async with self.db.transaction() as connection:
            space = await existing_namespace(connection, ref.namespace)
            found = await datasets_repo.last_deleted(connection, ref.namespace, ref.dataset, for_update=True)
            if found is None:
                raise NotFound(f"no deleted dataset {ref.name}: it never existed, or the sweep purged it",
                               reason="DATASET_NOT_FOUND")
            if await sweeping.deleted_longer_than(connection, found.id, self.retention_seconds):
                days = self.retention_seconds / DAY_SECONDS
                raise FailedPrecondition(
                    f"dataset {ref.name} was deleted at {found.delete_time}, more than {days:g} days ago (the "
                    "server's QUARRY_DELETED_RETENTION_DAYS): it can no longer be restored", reason="RETENTION_EXPIRED",
                    metadata={"delete_time": str(found.delete_time), "retention_days": f"{days:g}"})
            await quotas.check_datasets(connection, space)
            if not await datasets_repo.undelete(connection, found.id, found.revision):
                raise AlreadyExists(f"dataset {ref.name} already exists: a live dataset took the name since; rename "
                                    "or delete it first", reason="DATASET_ALREADY_EXISTS")
            await record_in(connection, caller, found.resource_name)
            restored = await datasets_repo.get(connection, found.id)
        assert restored is not None
        self._changed(ref.name)
        log.info("dataset undeleted", extra={"dataset_id": str(restored.id), "dataset": ref.name})
        return restored
