"""Reading versions: their files (paged listings, previews, statistics, bytes, download URLs) and differences.

Every call acts in the caller's namespace: version names resolve through `Versions.resolve`, which checks it.
A version's files exist once it is READY; asking for a file of a version still being built is
FAILED_PRECONDITION (VERSION_NOT_READY), and a path the version does not have is NOT_FOUND (FILE_NOT_FOUND).

ReadFile streams `store.read` in messages of READ_MESSAGE_BYTES, pulled one at a time by the gRPC
layer, so a slow reader makes the server wait instead of buffering. One message is read ahead: while gRPC
sends one, the next is read from the store (the read grant counts both: `StreamCosts.download`), so the
disk or S3 and the socket work at once instead of in turn. An offset equal to the file's size
reads nothing: the stream ends without a message (as does any read of an empty file).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from server.domain.budget import BufferBudget
from server.domain.caller import Caller
from server.domain.diff import FileChange, VersionDiff, change_of
from server.domain.listing import PageTokens, page_size
from server.domain.preview import Preview, preview_file
from server.domain.versions import ANSWER_BYTES, MAX_LISTED_FILES, Versions
from server.model import names
from server.model.datasets import TABULAR_FORMATS, FileFormat
from server.model.errors import FailedPrecondition, InvalidArgument, NotFound, OutOfRange, WrongState
from server.model.objects import ObjectStore
from server.model.versions import Version, VersionFile, VersionState, VersionView
from server.storage import versions as repo
from server.storage.db import Database

DEFAULT_PREVIEW_ROWS = 100
READ_MESSAGE_BYTES = 1 << 20
DEFAULT_URL_TTL = 3600.0


@dataclass(frozen=True)
class DownloadUrl:
    """A presigned URL and when it stops working."""

    url: str
    expire_time: datetime


@dataclass(frozen=True)
class FilePage:
    """One page of a version's files, the token of the next page ("" after the last), and the version listed."""

    files: tuple[VersionFile, ...]
    next_token: str
    version: Version


@dataclass(frozen=True)
class FileFilter:
    """Which files of a version a listing returns."""

    prefix: str = ""
    formats: tuple[FileFormat, ...] = ()


async def _one_ahead(pieces: AsyncIterator[tuple[int, bytes]]) -> AsyncIterator[tuple[int, bytes]]:
    """`pieces`, the next one read while the caller handles the current one (at most one ahead)."""
    iterator = aiter(pieces)
    ahead: asyncio.Future[tuple[int, bytes] | None] = asyncio.ensure_future(anext(iterator, None))
    try:
        while (piece := await ahead) is not None:
            ahead = asyncio.ensure_future(anext(iterator, None))
            yield piece
    finally:
        # The caller stopped early (the client went away) or the store failed: stop the read in flight, then close
        # the store's reader (its file or connection) here rather than whenever the collector finds it.
        ahead.cancel()
        await asyncio.wait([ahead])  # raises nothing of the read's; our own cancellation still goes through
        with contextlib.suppress(Exception):
            await iterator.aclose()  # type: ignore[attr-defined]


@dataclass(frozen=True)
class FileRead:
    """A validated read of a file: where it starts and how many bytes it covers."""

    file: VersionFile
    offset: int
    length: int
    store: ObjectStore
    budget: BufferBudget
    grant: int  # what the read holds at most: its buffer budget grant

    async def chunks(self) -> AsyncGenerator[tuple[int, bytes], None]:
        """(offset, bytes) in pieces of READ_MESSAGE_BYTES (the last may be shorter), read as they are consumed,
        within the server's buffer budget."""
        if self.length == 0:
            return
        async with self.budget.hold(self.grant, f"a read of {self.file.path!r}"):
            async for piece in _one_ahead(self._pieces()):
                yield piece

    async def _pieces(self) -> AsyncIterator[tuple[int, bytes]]:
        offset = self.offset
        held = bytearray()
        stream = self.store.read(self.file.object_key, self.offset, self.length, chunk_bytes=READ_MESSAGE_BYTES)
        # A local file yields whole pieces, passed on as they are; an S3 body yields whatever the socket had
        # (often a few KiB), gathered here into whole pieces.
        async for chunk in stream:
            if not held and len(chunk) == READ_MESSAGE_BYTES:
                yield offset, chunk
                offset += len(chunk)
                continue
            held += chunk
            while len(held) >= READ_MESSAGE_BYTES:
                yield offset, bytes(held[:READ_MESSAGE_BYTES])
                del held[:READ_MESSAGE_BYTES]
                offset += READ_MESSAGE_BYTES
        if held:
            yield offset, bytes(held)


class Files:
    """Version reads: diffs, and previews, statistics, bytes and download URLs of files."""

    def __init__(self, db: Database, store: ObjectStore, versions: Versions, max_preview_rows: int,
                 page_tokens: PageTokens, max_page_size: int, budget: BufferBudget, read_grant: int,
                 max_url_ttl: float = DEFAULT_URL_TTL, answer_bytes: int = ANSWER_BYTES) -> None:
        self.max_url_ttl = max_url_ttl
        self.answer_bytes = answer_bytes  # what a page of files or changes may take, about
        self.db = db
        self.store = store
        self.versions = versions
        self.max_preview_rows = max_preview_rows
        self._tokens = page_tokens
        self._max_page_size = max_page_size
        self.budget = budget
        self.read_grant = read_grant

    async def list(self, caller: Caller, parent: str, size: int, token: str, which: FileFilter,
                   view: VersionView) -> FilePage:
        """A page of a READY version's files, by path. A page stops early rather than outgrow one answer."""
        limit = page_size(size, self._max_page_size)
        version = _ready(await self.versions.get(caller, parent, "parent"))
        formats = sorted(f.value for f in set(which.formats))
        request = (str(version.id), which.prefix, formats)
        position = self._tokens.decode(token, request)
        if position is not None and not (len(position) == 1 and isinstance(position[0], str)):
            raise InvalidArgument.field("page_token", "invalid page token", reason="INVALID_PAGE_TOKEN")
        full = view is VersionView.FULL
        async with self.db.connection() as connection:
            found = await repo.files_page(connection, version.id, after=position[0] if position else None,
                                          prefix=which.prefix, formats=formats, limit=limit + 1, full=full)
        page: list[VersionFile] = []
        used = 0
        for file in found[:limit]:
            used += file.approx_bytes(full)
            if page and used > self.answer_bytes:
                break
            page.append(file)
        more = len(page) < len(found)
        return FilePage(tuple(page), self._tokens.encode([page[-1].path], request) if more else "", version)

    async def diff(self, caller: Caller, base: str, target: str, view: VersionView = VersionView.BASIC,
                   size: int = 0, token: str = "") -> VersionDiff:
        """A page of the paths added, removed and changed from `base` to `target`, two READY versions of one
        dataset, by path: up to `size` changes (0: MAX_LISTED_FILES), fewer rather than outgrow one answer.

        The token carries the two versions' ids and the count of unchanged paths: later pages compare the same two
        versions (a moved "latest" does not switch them mid-way) and count the unchanged paths only once.
        """
        base_ref = names.parse_version(base, "base_version")
        target_ref = names.parse_version(target, "target_version")
        if base_ref.dataset != target_ref.dataset:
            raise InvalidArgument.field("target_version", f"{target} is not a version of {base_ref.dataset.name}",
                                        reason="DIFFERENT_DATASETS")
        limit = MAX_LISTED_FILES if size == 0 else page_size(size, MAX_LISTED_FILES)
        request = ("diff", base, target, view.value)
        position = self._tokens.decode(token, request)
        if position is None:
            old = _ready(await self.versions.get(caller, base, "base_version"))
            new = _ready(await self.versions.get(caller, target, "target_version"))
            after, unchanged = None, None
        else:
            old_id, new_id, after, unchanged = _diff_position(position)
            # By uid: the versions the first page compared, checked again (namespace, dataset, state).
            old = _ready(await self.versions.get(caller, f"{base_ref.dataset.name}/versions/{old_id}", "page_token"))
            new = _ready(await self.versions.get(caller, f"{target_ref.dataset.name}/versions/{new_id}", "page_token"))
        async with self.db.connection() as connection:
            paths = await repo.differing_paths(connection, old.id, new.id, after=after, limit=limit + 1)
            before = {f.path: f for f in await repo.files_at(connection, old.id, paths[:limit])}
            now = {f.path: f for f in await repo.files_at(connection, new.id, paths[:limit])}
            if unchanged is None:
                unchanged = await repo.unchanged_count(connection, old.id, new.id)
        full = view is VersionView.FULL
        changes: list[FileChange] = []
        used = 0
        for path in paths[:limit]:
            change = change_of(path, before.get(path), now.get(path))
            if change is None:  # READY versions do not change; only a purge between the queries gets here
                continue
            used += sum(f.approx_bytes(full) for f in (change.base, change.target) if f is not None)
            if changes and used > self.answer_bytes:
                break
            changes.append(change)
        more = bool(changes) and changes[-1].path != paths[-1]
        next_token = self._tokens.encode([str(old.id), str(new.id), changes[-1].path, unchanged], request) \
            if more else ""
        return VersionDiff(old, new, tuple(changes), unchanged, next_token)

    async def file(self, caller: Caller, version: str, path: str) -> VersionFile:
        """One file of a READY version."""
        ref = names.parse_version(version, "version")
        names.file_path(path, "path")
        caller.check(ref.dataset.namespace)
        async with self.db.connection() as connection:
            found = await repo.file_of_ref(connection, ref, path)
        if found is not None:
            return found
        # A miss: which one (no dataset, no such version, not READY yet, no such path) is learnt step by step.
        version_id = await self.versions.resolve(caller, version, "version")
        async with self.db.connection() as connection:
            found = await repo.file(connection, version_id, path)
            if found is not None:
                return found
            held = await repo.get(connection, version_id)
        if held is not None:
            _ready(held)
        raise NotFound(f"path {path!r} is not in version {version}", reason="FILE_NOT_FOUND",
                       metadata={"path": path})

    async def preview(self, caller: Caller, version: str, path: str, row_limit: int) -> Preview:
        """The first rows of a tabular file (0 rows asked means DEFAULT_PREVIEW_ROWS)."""
        if row_limit < 0 or row_limit > self.max_preview_rows:
            raise InvalidArgument.field("row_limit", f"must be 0-{self.max_preview_rows} (0 means "
                                        f"{DEFAULT_PREVIEW_ROWS}); got {row_limit}", reason="INVALID_ROW_LIMIT")
        limit = row_limit or min(DEFAULT_PREVIEW_ROWS, self.max_preview_rows)
        # A CSV or JSON Lines file with a Parquet rendition previews from it: the footer and first pages only.
        return await preview_file(self.store, tabular(await self.file(caller, version, path)).rendered(), limit)

    async def stats(self, caller: Caller, version: str, path: str) -> VersionFile:
        """A tabular file with the column statistics computed when it was validated."""
        return tabular(await self.file(caller, version, path))

    async def read(self, caller: Caller, version: str, path: str, offset: int, limit: int,
                   rendition: bool = False) -> FileRead:
        """A read of `limit` bytes (0: to the end) from `offset` of the file, or of its Parquet rendition;
        OUT_OF_RANGE past the end."""
        if offset < 0:
            raise InvalidArgument.field("offset", f"must not be negative; got {offset}", reason="INVALID_OFFSET")
        if limit < 0:
            raise InvalidArgument.field("limit", f"must not be negative (0 reads to the end); got {limit}",
                                        reason="INVALID_LIMIT")
        file = await self.file(caller, version, path)
        if rendition:
            if file.rendition is None:
                raise FailedPrecondition(f"{path!r} has no Parquet rendition (only CSV and JSON Lines files of a "
                                         "dataset with the rule normalize_to_parquet have one)", reason="NO_RENDITION")
            file = file.rendered()
        if offset > file.size:
            raise OutOfRange(f"offset {offset} is past the end of {path!r} ({file.size} bytes)",
                             reason="OFFSET_OUT_OF_RANGE", metadata={"size": str(file.size)})
        available = file.size - offset
        return FileRead(file, offset, available if limit == 0 else min(limit, available), self.store, self.budget,
                        self.read_grant)

    @property
    def default_url_ttl(self) -> float:
        """The lifetime of a URL whose request asks for none."""
        return min(DEFAULT_URL_TTL, self.max_url_ttl)

    async def download_url(self, caller: Caller, version: str, path: str, ttl_seconds: float) -> DownloadUrl:
        """A presigned GET URL valid for `ttl_seconds` (0: an hour, or the maximum if lower); NotSupported on stores
        that cannot."""
        if ttl_seconds < 0 or ttl_seconds > self.max_url_ttl:
            raise InvalidArgument.field("ttl", f"must be between 0 and {self.max_url_ttl:g}s, the server's "
                                               f"QUARRY_MAX_URL_TTL_SECONDS (0 means {self.default_url_ttl:g}s); got "
                                               f"{ttl_seconds}s", reason="INVALID_TTL")
        seconds = max(1, math.floor(ttl_seconds or self.default_url_ttl))
        file = await self.file(caller, version, path)
        expire_time = datetime.now(UTC) + timedelta(seconds=seconds)
        return DownloadUrl(await self.store.presign_get(file.object_key, seconds), expire_time)


def _diff_position(position: list[object]) -> tuple[str, str, str, int]:
    """(base version id, target version id, last path, unchanged count) from a DiffVersions page token."""
    if len(position) == 4:
        old_id, new_id, after, unchanged = position
        if isinstance(old_id, str) and isinstance(new_id, str) and isinstance(after, str) and \
                isinstance(unchanged, int):
            return old_id, new_id, after, unchanged
    raise InvalidArgument.field("page_token", "invalid page token", reason="INVALID_PAGE_TOKEN")


def _ready(version: Version) -> Version:
    if version.state != VersionState.READY:
        raise WrongState(f"version {version.name} is {version.state.value}; only READY versions have files",
                         state=version.state.value, reason="VERSION_NOT_READY")
    return version


def tabular(file: VersionFile) -> VersionFile:
    """The file, if it is a table (CSV, JSON Lines or Parquet); FAILED_PRECONDITION (NOT_TABULAR) if not."""
    if file.format not in TABULAR_FORMATS:
        raise FailedPrecondition(f"{file.path!r} is {file.format.value}, not a table (CSV, JSONL or Parquet)",
                                 reason="NOT_TABULAR", metadata={"format": file.format.value})
    return file
