"""Namespaces: created by an operator (none appears on first use), each with quotas an operator sets.

UpdateNamespace follows AIP-134: the mask names quota fields ("quota.max_bytes", … or "quota" for all four);
an empty mask means every quota field the request sets to a non-zero value.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from server.domain.audit import record_in
from server.domain.cache import NotifiedCache
from server.domain.caller import Caller
from server.domain.listing import PageTokens, page_size
from server.model.errors import Aborted, AlreadyExists, InvalidArgument, NotFound
from server.model.names import validate_namespace
from server.model.namespaces import QUOTA_FIELDS, Namespace, Quota, Usage
from server.storage import namespaces as repo
from server.storage.db import Connection, Database
from server.storage.notifications import NAMESPACE_CHANNEL, NotificationHub

log = logging.getLogger(__name__)

MAX_REQUEST_ID = 128
LIMITS_CACHE_SECONDS = 60.0


def check_quota(quota: Quota) -> Quota:
    """A quota with no negative limit and a rate below a million calls per second."""
    for name in QUOTA_FIELDS:
        if getattr(quota, name) < 0:
            raise InvalidArgument.field(f"namespace.quota.{name}", "must not be negative", reason="INVALID_QUOTA")
    if quota.requests_per_second > 1_000_000:
        raise InvalidArgument.field("namespace.quota.requests_per_second", "at most 1000000",
                                    reason="INVALID_QUOTA")
    if quota.max_open_uploads > 2**31 - 1 or quota.max_datasets > 2**31 - 1 or quota.max_bytes > 2**63 - 1:
        raise InvalidArgument.field("namespace.quota", "a limit is out of range", reason="INVALID_QUOTA")
    return quota


@dataclass(frozen=True)
class QuotaChange:
    """An UpdateNamespace: the new quota values and the mask naming which to take."""

    quota: Quota
    paths: tuple[str, ...] = ()

    def fields(self) -> frozenset[str]:
        """The quota fields to change; INVALID_ARGUMENT (INVALID_UPDATE_MASK) for any other path."""
        if not self.paths:
            return frozenset(name for name in QUOTA_FIELDS if getattr(self.quota, name))
        chosen: set[str] = set()
        for path in self.paths:
            if path in ("quota", "*"):
                chosen.update(QUOTA_FIELDS)
            elif path.startswith("quota.") and path.removeprefix("quota.") in QUOTA_FIELDS:
                chosen.add(path.removeprefix("quota."))
            else:
                raise InvalidArgument.field("update_mask", f"cannot update {path!r}; updatable: quota, "
                                                           f"{', '.join('quota.' + f for f in QUOTA_FIELDS)}",
                                            reason="INVALID_UPDATE_MASK")
        return frozenset(chosen)


class Namespaces:
    """The namespace use cases, and the cached limits every call's rate check reads."""

    def __init__(self, db: Database, hub: NotificationHub, page_tokens: PageTokens, max_page_size: int) -> None:
        self.db = db
        self._tokens = page_tokens
        self._max_page_size = max_page_size
        self._limits: NotifiedCache[Quota] = NotifiedCache(hub, NAMESPACE_CHANNEL, self._load_quota,
                                                           ttl=LIMITS_CACHE_SECONDS)

    async def _load_quota(self, name: str) -> Quota | None:
        async with self.db.connection() as connection:
            found = await repo.get(connection, name)
        return found.quota if found is not None else None

    async def quota_of(self, name: str) -> Quota:
        """The quota of a namespace, cached (no limits when it does not exist)."""
        return await self._limits.get(name) or Quota()

    async def create(self, caller: Caller, name: str, quota: Quota, request_id: str | None) -> Namespace:
        """Create a namespace (operators only); a repeated request_id returns the first one."""
        caller.require_operator()
        validate_namespace(name)
        if request_id is not None and not 1 <= len(request_id) <= MAX_REQUEST_ID:
            raise InvalidArgument.field("request_id", f"must have 1-{MAX_REQUEST_ID} characters",
                                        reason="INVALID_REQUEST_ID")
        quota = check_quota(quota)
        caller.call.namespace = name
        async with self.db.transaction() as connection:
            created = await repo.insert(connection, name, quota, request_id)
            if created is None and request_id is not None:
                earlier = await repo.find_by_request_id(connection, request_id)
                if earlier is not None:
                    if earlier.name != name:
                        raise InvalidArgument.field("request_id", f"was already used to create namespace "
                                                                  f"{earlier.name!r}", reason="REQUEST_ID_REUSED")
                    return earlier
            if created is None:
                raise AlreadyExists(f"namespace {name} already exists", reason="NAMESPACE_ALREADY_EXISTS")
            await record_in(connection, caller, created.resource_name)
        log.info("namespace created", extra={"namespace": name, "by": caller.identity})
        return created

    async def get(self, caller: Caller, name: str) -> tuple[Namespace, Usage]:
        """A namespace and what it holds (readers of it); an empty name is the namespace the caller acts in when
        it names none (how a client with only a token learns where it is)."""
        namespace = caller.check(_parse(name, "name") if name else caller.namespace)
        async with self.db.connection() as connection:
            found = await repo.get(connection, namespace)
            if found is None:
                raise NotFound(f"namespace {namespace} not found", reason="NAMESPACE_NOT_FOUND")
            return found, await repo.usage(connection, found.id)

    async def list(self, caller: Caller, size: int, token: str) -> tuple[list[Namespace], str]:
        """The namespaces the caller's token is granted (every namespace, for an operator), by name."""
        limit = page_size(size, self._max_page_size)
        caller.call.checked = True  # the listing itself is what the caller may see
        names = None if caller.principal.operator else sorted(g.namespace for g in caller.principal.grants)
        request = ("namespaces", caller.principal.token_id or caller.identity)
        position = self._tokens.decode(token, request)
        after = None
        if position is not None:
            if len(position) != 1 or not isinstance(position[0], str):
                raise InvalidArgument.field("page_token", "invalid page token", reason="INVALID_PAGE_TOKEN")
            after = position[0]
        async with self.db.connection() as connection:
            found = await repo.page(connection, names=names, after=after, limit=limit + 1)
        page, more = found[:limit], len(found) > limit
        return page, self._tokens.encode([page[-1].name], request) if more else ""

    async def update(self, caller: Caller, name: str, etag: str, change: QuotaChange) -> Namespace:
        """Set quota fields (operators only); ABORTED when `etag` is set and stale."""
        caller.require_operator()
        namespace = _parse(name, "namespace.name")
        caller.call.namespace = namespace
        fields = change.fields()
        check_quota(change.quota)
        async with self.db.transaction() as connection:
            current = await repo.get(connection, namespace, for_update=True)
            if current is None:
                raise NotFound(f"namespace {namespace} not found", reason="NAMESPACE_NOT_FOUND")
            if etag and etag != current.etag:
                raise Aborted(f"namespace {namespace} changed since etag {etag!r} was read; read it again",
                              reason="ETAG_MISMATCH")
            if not fields:
                return current
            quota = replace(current.quota, **{f: getattr(change.quota, f) for f in fields})
            await repo.set_quota(connection, current.id, current.revision, quota)
            await record_in(connection, caller, current.resource_name)
            updated = await repo.get(connection, namespace)
        assert updated is not None
        self._limits.drop(namespace)
        log.info("namespace quota set", extra={"namespace": namespace, "by": caller.identity, "fields": sorted(fields)})
        return updated


async def existing_namespace(connection: Connection, name: str, *, lock: bool = False) -> Namespace:
    """The namespace a use case acts in; NOT_FOUND (NAMESPACE_NOT_FOUND) when no operator created it."""
    found = await repo.get(connection, name, for_update=lock)
    if found is None:
        raise NotFound(f"namespace {name} not found: an operator creates namespaces (quarry namespaces create)",
                       reason="NAMESPACE_NOT_FOUND")
    return found


def _parse(name: str, field: str) -> str:
    prefix, _, namespace = name.partition("/")
    if prefix != "namespaces" or not namespace:
        raise InvalidArgument.field(field, f"must be namespaces/{{namespace}}, got {name!r}", reason="INVALID_NAME")
    try:
        return validate_namespace(namespace)
    except InvalidArgument:
        raise InvalidArgument.field(field, f"invalid namespace name {namespace!r}",
                                    reason="INVALID_NAMESPACE") from None
