"""Datasets: create, read, list, update and (soft) delete.

Every change is a compare-and-set on the dataset's revision, so two concurrent writers never both win:
a writer that sent an etag and lost gets ABORTED (ETAG_MISMATCH); one that sent none re-reads and
applies its change again, a few times, before giving up with ABORTED (CONCURRENT_CHANGE).

UpdateDataset follows AIP-134: the mask names the fields to change ("description", "labels", "rules"),
"*" alone replaces all three, and an empty mask means every writable field the request populates (a
non-empty description, non-empty labels, a set rules message). A mask that names nothing to change
returns the dataset unchanged.

GetDataset reads through a per-replica cache (`NotifiedCache`, keyed by resource name): every insert, update or
delete of a dataset row NOTIFYs `quarry_dataset` (migration 0005), so each replica drops its copy once Postgres
tells it, and a change made in this process drops it here before the call that made it returns. A read through
another replica can so lag a change by the notification's delivery (well under a millisecond on one host); a
replica that cannot hear notifications reads Postgres every time. Every other read, and every write's own
read, goes to Postgres.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from server.domain import quotas
from server.domain.audit import record_in
from server.domain.cache import NotifiedCache
from server.domain.caller import Caller
from server.domain.listing import PageTokens, page_size, parse_filter
from server.domain.namespaces import existing_namespace
from server.model import names
from server.model.datasets import Dataset, DatasetRules, DatasetState
from server.model.errors import Aborted, AlreadyExists, InvalidArgument, NotFound
from server.model.names import NAME_PATTERN
from server.storage import datasets as repo
from server.storage.datasets import DatasetQuery
from server.storage.db import Connection, Database
from server.storage.notifications import DATASET_CHANNEL, NotificationHub

log = logging.getLogger(__name__)

MAX_DESCRIPTION = 16384
MAX_LABELS = 64
MAX_LABEL_VALUE = 63
MAX_REQUEST_ID = 128
UPDATE_PATHS = ("description", "labels", "rules")
FILTER_FIELDS = ("state", "labels.", "name")
ORDER_FIELDS = ("name", "update_time")
CAS_ATTEMPTS = 5
# How long a cached dataset is trusted without a notification: only a bound in case one were lost while the
# listener still looked connected; changes normally drop entries at once.
CACHE_SECONDS = 10.0
_NAME_PREFIX = re.compile(r"^[a-z0-9_.-]{0,62}$")


def check_description(value: str) -> str:
    """A description: at most 16,384 characters."""
    if len(value) > MAX_DESCRIPTION:
        raise InvalidArgument.field("dataset.description", f"has {len(value)} characters; at most {MAX_DESCRIPTION}",
                                    reason="INVALID_DESCRIPTION")
    return value


def check_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """Labels: at most 64; keys like dataset names (so `labels.KEY` can filter on them), values at most 63 chars."""
    field = "dataset.labels"
    if len(labels) > MAX_LABELS:
        raise InvalidArgument.field(field, f"has {len(labels)} labels; at most {MAX_LABELS}", reason="INVALID_LABELS")
    for key, value in labels.items():
        if not NAME_PATTERN.match(key):
            raise InvalidArgument.field(field, f"invalid label key {key!r}: use 1-63 lower-case letters, digits and "
                                               "-_. starting with a letter or digit", reason="INVALID_LABELS")
        if len(value) > MAX_LABEL_VALUE:
            raise InvalidArgument.field(f"{field}[{key}]", f"value has {len(value)} characters; at most "
                                                           f"{MAX_LABEL_VALUE}", reason="INVALID_LABELS")
    return dict(labels)


def check_rules(rules: DatasetRules) -> DatasetRules:
    """Rules with no negative limits and no empty column names; repeated formats and columns count once."""
    field = "dataset.rules"
    if rules.max_file_bytes < 0:
        raise InvalidArgument.field(f"{field}.max_file_bytes", "must not be negative", reason="INVALID_RULES")
    if rules.min_rows < 0:
        raise InvalidArgument.field(f"{field}.min_rows", "must not be negative", reason="INVALID_RULES")
    if any(not column for column in rules.required_columns):
        raise InvalidArgument.field(f"{field}.required_columns", "column names must not be empty",
                                    reason="INVALID_RULES")
    return replace(rules, allowed_formats=tuple(dict.fromkeys(rules.allowed_formats)),
                   required_columns=tuple(dict.fromkeys(rules.required_columns)))


@dataclass(frozen=True)
class NewDataset:
    """What a client asks for when it creates a dataset."""

    name: str
    description: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    rules: DatasetRules = DatasetRules()
    request_id: str | None = None

    def validated(self) -> NewDataset:
        """Check every field; INVALID_ARGUMENT naming the first bad one otherwise."""
        names.dataset_name(self.name, "dataset_id")
        if self.request_id is not None and not 1 <= len(self.request_id) <= MAX_REQUEST_ID:
            raise InvalidArgument.field("request_id", f"must have 1-{MAX_REQUEST_ID} characters",
                                        reason="INVALID_REQUEST_ID")
        return replace(self, description=check_description(self.description), labels=check_labels(self.labels),
                       rules=check_rules(self.rules))


@dataclass(frozen=True)
class DatasetChanges:
    """An update: new values, and the mask of the fields to take from them (see the module docstring)."""

    description: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    rules: DatasetRules | None = None  # None: the request left the rules message unset
    paths: tuple[str, ...] = ()

    def fields(self) -> frozenset[str]:
        """The fields to change; INVALID_ARGUMENT (INVALID_UPDATE_MASK) for a path that is not updatable."""
        if not self.paths:
            populated = {"description": bool(self.description), "labels": bool(self.labels),
                         "rules": self.rules is not None}
            return frozenset(name for name, present in populated.items() if present)
        if "*" in self.paths:
            if len(self.paths) > 1:
                raise InvalidArgument.field("update_mask", '"*" must be the only path', reason="INVALID_UPDATE_MASK")
            return frozenset(UPDATE_PATHS)
        unknown = [path for path in self.paths if path not in UPDATE_PATHS]
        if unknown:
            raise InvalidArgument.field("update_mask", f"cannot update {', '.join(map(repr, unknown))}; updatable: "
                                                       f"{', '.join(UPDATE_PATHS)} (or \"*\")",
                                        reason="INVALID_UPDATE_MASK")
        return frozenset(self.paths)

    def validated(self, fields: frozenset[str]) -> DatasetChanges:
        """Check the values of the fields to change (the others are ignored, as AIP-134 says)."""
        return DatasetChanges(
            description=check_description(self.description) if "description" in fields else "",
            labels=check_labels(self.labels) if "labels" in fields else {},
            rules=check_rules(self.rules or DatasetRules()) if "rules" in fields else None,
            paths=self.paths)

    def apply(self, current: Dataset, fields: frozenset[str]) -> tuple[str, dict[str, str], DatasetRules]:
        """(description, labels, rules) after the change."""
        return (self.description if "description" in fields else current.description,
                self.labels if "labels" in fields else current.labels,
                (self.rules or DatasetRules()) if "rules" in fields else current.rules)


@dataclass(frozen=True)
class DatasetListing:
    """A ListDatasets request as the client sent it."""

    parent: str = ""
    page_size: int = 0
    page_token: str = ""
    filter: str = ""
    order_by: str = ""
    show_deleted: bool = False


class Datasets:
    """The dataset use cases."""

    def __init__(self, db: Database, hub: NotificationHub, page_tokens: PageTokens, max_page_size: int,
                 cache_seconds: float = CACHE_SECONDS) -> None:
        self.db = db
        self._tokens = page_tokens
        self._max_page_size = max_page_size
        self._live: NotifiedCache[Dataset] = NotifiedCache(hub, DATASET_CHANNEL, self._load_live, ttl=cache_seconds)

    async def _load_live(self, name: str) -> Dataset | None:
        ref = names.parse_dataset(name, "name")
        async with self.db.connection() as connection:
            return await repo.get_live(connection, ref.namespace, ref.dataset)

    def changed(self, name: str) -> None:
        """A dataset row was changed by this process (its transaction committed): drop it from this replica's
        cache now, so the caller's next read sees the change; other replicas hear the NOTIFY."""
        self._live.drop(name)

    async def create(self, caller: Caller, parent: str, spec: NewDataset) -> Dataset:
        """Create a DRAFT dataset, or return the one an earlier request with the same request_id created."""
        namespace = caller.parent(parent)
        caller.call.resource = f"namespaces/{namespace}/datasets/{spec.name}"
        spec = spec.validated()
        async with self.db.transaction() as connection:
            space = await existing_namespace(connection, namespace)
            if spec.request_id is not None:
                # The request_id was used before (a replay, or a concurrent twin that won): its dataset stands.
                earlier = await repo.find_by_request_id(connection, space.id, spec.request_id)
                if earlier is not None:
                    await record_in(connection, caller, earlier.resource_name)
                    return _replayed(earlier, spec)
            await quotas.check_datasets(connection, space)
            created = await repo.insert(connection, namespace_id=space.id, name=spec.name,
                                        description=spec.description, labels=spec.labels, rules=spec.rules,
                                        request_id=spec.request_id)
            if created is None and spec.request_id is not None:
                earlier = await repo.find_by_request_id(connection, space.id, spec.request_id)
                if earlier is not None:
                    await record_in(connection, caller, earlier.resource_name)
                    return _replayed(earlier, spec)
            if created is None:
                raise AlreadyExists(f"dataset namespaces/{namespace}/datasets/{spec.name} already exists",
                                    reason="DATASET_ALREADY_EXISTS")
            await record_in(connection, caller, created.resource_name)
        log.info("dataset created", extra={"dataset_id": str(created.id), "namespace": namespace,
                                           "dataset": created.name})
        return created

    async def get(self, caller: Caller, name: str) -> Dataset:
        """The live dataset a resource name names, in the caller's namespace."""
        ref = _ref(caller, name, "name")
        found = await self._live.get(ref.name)
        if found is None:
            raise NotFound(f"dataset {ref.name} not found", reason="DATASET_NOT_FOUND")
        return found

    async def list(self, caller: Caller, listing: DatasetListing) -> tuple[list[Dataset], str]:
        """A page of the namespace's datasets and the next page's token ("" on the last page)."""
        namespace = caller.parent(listing.parent)
        limit = page_size(listing.page_size, self._max_page_size)
        query = _query(namespace, listing.filter, listing.show_deleted)
        order, descending = _order(listing.order_by)
        # The token is bound to everything that decides the sequence of results, but not to the page size.
        request = (namespace, listing.filter.strip(), order, descending, listing.show_deleted)
        position = self._tokens.decode(listing.page_token, request)
        query = replace(query, order=order, descending=descending,
                        after=None if position is None else _position(position, order))
        async with self.db.connection() as connection:
            found = await repo.page(connection, query, limit + 1)
        page, more = found[:limit], len(found) > limit
        next_token = ""
        if more:
            last = page[-1]
            key = last.name if order == "name" else last.update_time.isoformat()
            next_token = self._tokens.encode([key, str(last.id)], request)
        return page, next_token

    async def update(self, caller: Caller, name: str, etag: str, changes: DatasetChanges) -> Dataset:
        """Change the fields the mask names; ABORTED if `etag` is set and not current."""
        ref = _ref(caller, name, "dataset.name")
        fields = changes.fields()
        changes = changes.validated(fields)
        for _ in range(CAS_ATTEMPTS):
            updated: Dataset | None = None
            async with self.db.transaction() as connection:
                current = await _live(connection, ref)
                _check_etag(current, etag)
                if not fields:
                    return current
                description, labels, rules = changes.apply(current, fields)
                if await repo.update(connection, current.id, current.revision, description=description,
                                     labels=labels, rules=rules):
                    await record_in(connection, caller, current.resource_name)
                    updated = await _reread(connection, current.id)
            if updated is not None:
                self.changed(ref.name)  # committed: a read racing the commit cannot store the old row now
                return updated
            # Lost the race: the next read sees the winner (and refuses a now stale etag).
        raise _contended(ref)

    async def delete(self, caller: Caller, name: str, etag: str) -> Dataset:
        """Soft-delete a live dataset (its name becomes free); ABORTED if `etag` is set and not current."""
        ref = _ref(caller, name, "name")
        for _ in range(CAS_ATTEMPTS):
            deleted: Dataset | None = None
            async with self.db.transaction() as connection:
                current = await _live(connection, ref)
                _check_etag(current, etag)
                if await repo.soft_delete(connection, current.id, current.revision):
                    await record_in(connection, caller, current.resource_name)
                    deleted = await _reread(connection, current.id)
            if deleted is not None:
                self.changed(ref.name)
                log.info("dataset deleted", extra={"dataset_id": str(deleted.id), "namespace": ref.namespace,
                                                   "dataset": deleted.name})
                return deleted
        raise _contended(ref)


def _ref(caller: Caller, name: str, field: str) -> names.DatasetRef:
    ref = names.parse_dataset(name, field)
    caller.check(ref.namespace)
    return ref


async def _live(connection: Connection, ref: names.DatasetRef) -> Dataset:
    found = await repo.get_live(connection, ref.namespace, ref.dataset)
    if found is None:
        raise NotFound(f"dataset {ref.name} not found", reason="DATASET_NOT_FOUND")
    return found


async def _reread(connection: Connection, dataset_id: uuid.UUID) -> Dataset:
    found = await repo.get(connection, dataset_id)
    assert found is not None  # just written in this transaction
    return found


def _check_etag(current: Dataset, etag: str) -> None:
    if etag and etag != current.etag:
        raise Aborted(f"dataset {current.resource_name} changed since etag {etag!r} was read; read it again",
                      reason="ETAG_MISMATCH")


def _contended(ref: names.DatasetRef) -> Aborted:
    return Aborted(f"dataset {ref.name} is being changed concurrently; retry", reason="CONCURRENT_CHANGE",
                   retry_after=0.1)


def _replayed(earlier: Dataset, spec: NewDataset) -> Dataset:
    if earlier.name != spec.name:
        raise InvalidArgument.field("request_id", f"was already used to create dataset {earlier.name!r}",
                                    reason="REQUEST_ID_REUSED")
    return earlier


def _query(namespace: str, text: str, show_deleted: bool) -> DatasetQuery:
    states: list[DatasetState] = []
    labels: list[tuple[str, str]] = []
    exact: list[str] = []
    prefixes: list[str] = []
    for term in parse_filter(text, FILTER_FIELDS):
        if term.field == "state":
            value = term.value.upper().removeprefix("DATASET_STATE_")
            if value not in DatasetState.__members__:
                raise InvalidArgument.field("filter", f"unknown dataset state {term.value!r}; use DRAFT, ACTIVE or "
                                                      "DELETED", reason="INVALID_FILTER")
            states.append(DatasetState(value))
        elif term.field == "name":
            value = term.value
            if value.endswith("*") and _NAME_PREFIX.match(value[:-1]):
                prefixes.append(value[:-1])
            elif NAME_PATTERN.match(value):
                exact.append(value)
            else:
                raise InvalidArgument.field("filter", f"{value!r} is neither a dataset name nor a name prefix "
                                                      'followed by "*"', reason="INVALID_FILTER")
        else:
            labels.append((term.field.removeprefix("labels."), term.value))
    return DatasetQuery(namespace=namespace, states=tuple(states), labels=tuple(labels), names=tuple(exact),
                        name_prefixes=tuple(prefixes), show_deleted=show_deleted)


def _order(text: str) -> tuple[str, bool]:
    words = text.split()
    if not words:
        return "name", False
    if words[0] in ORDER_FIELDS and (len(words) == 1 or (len(words) == 2 and words[1].lower() == "desc")):
        return words[0], len(words) == 2
    raise InvalidArgument.field("order_by", f"cannot order by {text!r}; use name or update_time, optionally "
                                            'followed by " desc"', reason="INVALID_ORDER_BY")


def _position(position: list[Any], order: str) -> tuple[str | datetime, uuid.UUID]:
    try:
        key, last_id = position
        if not isinstance(key, str):
            raise TypeError("key is not a string")
        return (key if order == "name" else datetime.fromisoformat(key)), uuid.UUID(last_id)
    except (ValueError, TypeError, AttributeError):
        raise InvalidArgument.field("page_token", "invalid page token", reason="INVALID_PAGE_TOKEN") from None
