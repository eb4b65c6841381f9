"""One `Upload` stream: header, chunks, optional finish; re-blocked into parts.

The stream holds at most one part (S3) or one chunk (local store, written through to its offset) in
memory, and reads the next message only after the previous bytes were handed to the store, so gRPC flow
control slows a client down when the store is slow. A part counts once it is durable in the store and
recorded in Postgres; the part in flight when a stream breaks is lost, and the client resumes from the
committed size. A full part's commit is shielded from cancellation: once received, it lands.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from server import metrics
from server.domain import quotas
from server.domain.budget import BufferBudget, StreamCosts, WriterBytes
from server.domain.caller import Caller
from server.domain.crc import combine, crc32c
from server.domain.namespaces import existing_namespace
from server.domain.parts import MAX_PARTS, choose_part_size
from server.domain.uploads import NewUpload, Uploads, not_open
from server.model import names
from server.model.errors import (
    ChecksumMismatch,
    FailedPrecondition,
    InvalidArgument,
    OutOfRange,
    QuotaExceeded,
    ResourceExhausted,
    WrongOffset,
    WrongState,
)
from server.model.objects import PartWriter
from server.model.uploads import Upload, UploadPart, UploadState
from server.storage import uploads as repo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Chunk:
    """Bytes that continue the write, with the client's optional CRC32C of them."""

    data: bytes
    crc32c: int | None = None


@dataclass(frozen=True)
class Finish:
    """The bytes sent end at the end of the file."""

    sha256: str | None = None
    keep_open: bool = False


StreamMessage = Chunk | Finish


@dataclass(frozen=True)
class WriteResult:
    """The upload after a stream, and how many of the stream's bytes were committed."""

    upload: Upload
    committed: int


@dataclass
class _OpenPart:
    number: int
    offset: int
    writer: PartWriter
    own_bytes: bool  # whether its buffers are the stream's own (else borrowed from the budget)
    crc: int = 0

    @property
    def size(self) -> int:
        return self.writer.size


class _Landing:
    """Commits of received parts: one may be landing (fsync or S3 upload, then the Postgres record) while the
    stream receives the next part. Each commit runs shielded: a part that arrived whole lands even if the
    stream breaks."""

    def __init__(self) -> None:
        self._task: asyncio.Future[int] | None = None
        self.committed = 0

    def start(self, commit: Coroutine[Any, Any, int]) -> None:
        """Start landing a part; the previous one must have landed (`wait`), so a stream that owns a part
        hands it over only once nothing can fail between the hand-over and this call."""
        assert self._task is None
        self._task = asyncio.ensure_future(commit)

    async def wait(self) -> None:
        """Wait for the part in flight, if any."""
        if self._task is not None:
            task = self._task
            self.committed += await asyncio.shield(task)
            self._task = None

    async def settle(self) -> None:
        """After a failure: let the part in flight finish landing, whatever its outcome."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)


class UploadStream:
    """Writes the bytes of one stream into an upload, within the server's buffer budget."""

    def __init__(self, uploads: Uploads, budget: BufferBudget, costs: StreamCosts) -> None:
        self.uploads = uploads
        self.budget = budget
        self.costs = costs

    async def write(self, caller: Caller, target: NewUpload | str, write_offset: int,
                    messages: AsyncIterator[StreamMessage],
                    on_open: Callable[[Upload], Awaitable[None]], parent: str = "") -> WriteResult:
        """Open (under `parent`) or find the upload, then write the stream's bytes into it. The stream's
        grant of the buffer budget comes first: a stream refused for want of memory has opened nothing."""
        if isinstance(target, NewUpload):
            if write_offset != 0:
                raise InvalidArgument.field("header.write_offset", "must be 0 when the header creates the upload")
            found = None
            declared = target.validated(self.uploads.limits).declared_size
            part_size = choose_part_size(declared, self.uploads.limits)
        else:
            found = await self.uploads.load(caller, target, "header.upload")
            declared, part_size = found.declared_size, found.part_size
        writer_bytes = self.uploads.store.part_buffer_bytes(part_size, _part_count(declared, part_size))
        rest = self.costs.upload - self.costs.window + writer_bytes
        async with self.budget.stream(self.costs.window, rest, "an upload stream"):
            if found is None:
                assert isinstance(target, NewUpload)
                upload, created = await self.uploads.create(caller, parent, target)
                if not created and upload.committed_bytes != write_offset:
                    # A retried one-call upload (same request_id): tell the client where to resume.
                    raise WrongOffset(f"upload {upload.name} exists with {upload.committed_bytes} bytes committed; "
                                      f"resume it at that offset", expected_offset=upload.committed_bytes)
            else:
                # Read again: other streams may have moved the upload on while this one waited for its grant.
                upload, created = await self.uploads.load(caller, found.name, "header.upload"), False
            caller.call.resource = upload.name
            return await self._stream(caller, upload, created, write_offset, messages, on_open,
                                      WriterBytes(self.budget, writer_bytes))

    async def _stream(self, caller: Caller, upload: Upload, created: bool, write_offset: int,
                      messages: AsyncIterator[StreamMessage], on_open: Callable[[Upload], Awaitable[None]],
                      writers: WriterBytes) -> WriteResult:
        if not created:
            self._check_writable(upload, write_offset)
        metrics.UPLOAD_STREAMS.inc()
        landing = _Landing()
        try:
            # Inside the try: if announcing the upload fails, or the call is cancelled meanwhile, an upload this
            # stream created is discarded like any other that committed nothing.
            await on_open(upload)
            committed, finish = await self._write(upload, write_offset, messages, landing, writers)
        except ResourceExhausted as exc:
            if isinstance(exc, QuotaExceeded) or exc.retryable:
                # A namespace quota may be raised or space freed, and the server's buffer budget frees up in a
                # moment: the upload stays resumable.
                await asyncio.shield(self._settle(upload, created, landing))
            else:
                # Past the size limit the upload can never finish: fail it and free its bytes.
                await asyncio.shield(self._fail(upload, exc, landing))
            raise
        except BaseException:
            await asyncio.shield(self._settle(upload, created, landing))
            raise
        finally:
            metrics.UPLOAD_STREAMS.dec()
        if created and committed == 0 and finish is None:
            # The stream that opened the upload ended without a whole part or a finish: there is nothing to
            # resume, so nothing is kept. (This is also how gRPC ends a stream whose message it refused.)
            await asyncio.shield(self._discard_if_empty(upload, landing))
            raise FailedPrecondition("the stream ended before a whole part was written and without a finish "
                                     "message; nothing was kept", reason="NOTHING_COMMITTED")
        if finish is not None and not finish.keep_open:
            return WriteResult(await self.uploads.complete_upload(upload, finish.sha256, caller), committed)
        async with self.uploads.db.connection() as connection:
            current = await repo.get(connection, upload.id)
        assert current is not None
        return WriteResult(current, committed)

    async def _settle(self, upload: Upload, created: bool, landing: _Landing) -> None:
        # A stream that created its upload and failed (bad input, a dropped connection, a message gRPC refused)
        # before committing a byte leaves nothing behind: resuming from 0 is starting over. Otherwise the part
        # in flight lands before the caller hears, so GetUpload is current.
        if created:
            await self._discard_if_empty(upload, landing)
        else:
            await landing.settle()

    async def _discard_if_empty(self, upload: Upload, landing: _Landing) -> None:
        # A part whose commit outlived the stream may still be landing: let it, then look.
        await landing.settle()
        await self.uploads.discard_new(upload)

    async def _fail(self, upload: Upload, error: ResourceExhausted, landing: _Landing) -> None:
        await landing.settle()
        await self.uploads.fail_open(upload, error)

    def _check_writable(self, upload: Upload, write_offset: int) -> None:
        if upload.state != UploadState.OPEN:
            raise not_open(upload)
        if upload.expire_time <= datetime.now(UTC):
            raise WrongState(f"upload {upload.name} expired at {upload.expire_time.isoformat()}",
                             state="EXPIRED", reason="UPLOAD_EXPIRED")
        committed = upload.committed_bytes
        if write_offset == committed:
            return
        at_boundary = write_offset % upload.part_size == 0
        number = write_offset // upload.part_size + 1
        if upload.declared_size is None:
            # No byte may be written at or past the limits: refused here, not as ResourceExhausted after the
            # header, which would fail the upload and delete what other streams committed.
            limit = min(self.uploads.limits.max_upload_bytes, MAX_PARTS * upload.part_size)
            if write_offset >= limit:
                raise WrongOffset(f"write_offset {write_offset} is past the largest upload possible ({limit} bytes:"
                                  f" max_upload_bytes {self.uploads.limits.max_upload_bytes}, at most {MAX_PARTS} "
                                  f"parts of {upload.part_size} bytes); expected {committed} (or the start of a "
                                  "part not yet written)", expected_offset=committed)
            within = True
        else:
            within = write_offset <= upload.declared_size
        if write_offset >= 0 and at_boundary and within and upload.part(number) is None:
            return  # a parallel stream starting at a part not yet written
        raise WrongOffset(f"write_offset {write_offset} is not where this upload continues: expected {committed}"
                          f" (or the start of a part not yet written; parts are {upload.part_size} bytes)",
                          expected_offset=committed)

    async def _write(self, upload: Upload, offset: int, messages: AsyncIterator[StreamMessage],
                     landing: _Landing, writers: WriterBytes) -> tuple[int, Finish | None]:
        position = offset
        part: _OpenPart | None = None
        finish: Finish | None = None
        try:
            async for message in messages:
                if finish is not None:
                    raise InvalidArgument.field("finish", "no message may follow the finish message")
                if isinstance(message, Finish):
                    _check_finish(upload, message)
                    finish = message
                    continue
                data = message.data
                pieces, crcs = self._accept(upload, position, message)
                metrics.UPLOAD_BYTES.inc(len(data))
                for piece, piece_crc in zip(pieces, crcs, strict=True):
                    if part is None:
                        part = await self._open_part(upload, position, writers, landing)
                    await part.writer.write(piece)
                    part.crc = combine(part.crc, piece_crc, len(piece)) if part.size > len(piece) else piece_crc
                    position += len(piece)
                    if part.size == upload.part_size:
                        # The previous part's error (or a cancellation) surfaces here, while `part` is still
                        # ours for the `finally` to discard.
                        await landing.wait()
                        full, part = part, None  # the commit owns it now, even if this stream is cancelled
                        landing.start(self._commit(upload, full, writers))
            if finish is not None and upload.declared_size is not None and position != upload.declared_size:
                raise FailedPrecondition(f"the stream ended at byte {position} of a {upload.declared_size}-byte "
                                         "upload", reason="SIZE_SHORT",
                                         metadata={"committed_bytes": str(position - (part.size if part else 0)),
                                                   "declared_size": str(upload.declared_size)})
            at_end = upload.declared_size is not None and position == upload.declared_size
            if part is not None and (finish is not None or at_end):
                await landing.wait()
                last, part = part, None
                landing.start(self._commit(upload, last, writers))
            await landing.wait()
        finally:
            if part is not None:
                await _release(part, writers)
        return landing.committed, finish

    def _accept(self, upload: Upload, position: int, chunk: Chunk) -> tuple[list[memoryview], list[int]]:
        """Check a chunk (size, CRC32C, limits) before any of it is written; return it cut at part
        boundaries, with the CRC32C of each piece."""
        limits = self.uploads.limits
        data = chunk.data
        if len(data) > limits.max_chunk_bytes:
            raise InvalidArgument.field("chunk.data", f"chunk of {len(data)} bytes exceeds max_chunk_bytes "
                                                      f"({limits.max_chunk_bytes})", reason="CHUNK_TOO_LARGE")
        pieces = self._split(upload, position, data)
        crcs = [crc32c(piece) if len(piece) < len(data) else crc32c(data) for piece in pieces]
        chunk_crc = 0
        for piece, piece_crc in zip(pieces, crcs, strict=True):
            chunk_crc = combine(chunk_crc, piece_crc, len(piece))
        if chunk.crc32c is not None and chunk.crc32c != chunk_crc:
            raise ChecksumMismatch(f"crc32c of the chunk at offset {position} is {chunk_crc}, the client "
                                   f"sent {chunk.crc32c}; the chunk was not committed",
                                   metadata={"offset": str(position)})
        end = position + len(data)
        if upload.declared_size is not None and end > upload.declared_size:
            raise OutOfRange(f"write past the declared size: bytes {position}-{end} of a "
                             f"{upload.declared_size}-byte upload", reason="SIZE_EXCEEDED",
                             metadata={"declared_size": str(upload.declared_size)})
        if end > limits.max_upload_bytes:
            raise ResourceExhausted(f"upload exceeds the limit of {limits.max_upload_bytes} bytes",
                                    reason="UPLOAD_TOO_LARGE")
        return pieces, crcs

    @staticmethod
    def _split(upload: Upload, position: int, data: bytes) -> list[memoryview]:
        """The chunk cut at part boundaries."""
        view = memoryview(data)
        pieces = []
        while view:
            room = upload.part_size - position % upload.part_size
            pieces.append(view[:room])
            position += min(room, len(view))
            view = view[room:]
        return pieces

    async def _open_part(self, upload: Upload, position: int, writers: WriterBytes, landing: _Landing) -> _OpenPart:
        number = position // upload.part_size + 1
        if number > MAX_PARTS:
            raise ResourceExhausted(f"the file needs more than {MAX_PARTS} parts of {upload.part_size} bytes; "
                                    "declare its size when creating the upload", reason="TOO_MANY_PARTS")
        # Another stream may have written this part since ours began: never write over committed bytes.
        async with self.uploads.db.connection() as connection:
            if await repo.part_exists(connection, upload.id, number):
                raise FailedPrecondition(f"part {number} (offset {position}) is already written; a stream "
                                         "must stop where another stream's parts begin",
                                         reason="PART_ALREADY_WRITTEN", metadata={"part_number": str(number)})
        assert upload.store_upload_id is not None
        own = writers.take()
        if own is None:
            await landing.wait()  # no memory for a second writer: the last part lands, and gives its writer back
            own = writers.take()
            assert own is not None
        try:
            writer = self.uploads.store.open_part(upload.staging_key, upload.store_upload_id, number, position,
                                                  upload.part_size, _part_count(upload.declared_size, upload.part_size))
        except BaseException:
            writers.give(own)
            raise
        return _OpenPart(number, position, writer, own)

    async def _commit(self, upload: Upload, part: _OpenPart, writers: WriterBytes) -> int:
        started = time.perf_counter()
        size = part.size
        try:
            etag = await part.writer.commit()
        finally:
            await _release(part, writers)  # committed or not, the writer's buffers are done with
        store_kind = self.uploads.store.kind
        metrics.UPLOAD_PART_SECONDS.labels(store=store_kind).observe(time.perf_counter() - started)
        metrics.UPLOAD_PARTS.labels(store=store_kind).inc()
        async with self.uploads.db.transaction() as connection:
            # A part counts against its namespace's stored bytes from the moment it is recorded.
            await quotas.check_bytes(connection, await existing_namespace(connection, upload.namespace), size)
            outcome = await repo.record_part(connection, upload.id, UploadPart(part.number, part.offset, size, etag,
                                                                               part.crc),
                                             self.uploads.limits.expiry_seconds)
            if outcome == "not-open":
                current = await repo.get(connection, upload.id)
                assert current is not None
                raise not_open(current)
        if outcome == "conflict":
            raise FailedPrecondition(f"part {part.number} was written by another stream with different bytes",
                                     reason="PART_CONFLICT", metadata={"part_number": str(part.number)})
        return size


def _part_count(declared_size: int | None, part_size: int) -> int:
    """How many parts an upload will have at most."""
    return MAX_PARTS if declared_size is None else max(1, -(-declared_size // part_size))


async def _release(part: _OpenPart, writers: WriterBytes) -> None:
    """Drop a part's writer and give its buffers back."""
    try:
        await part.writer.discard()
    finally:
        writers.give(part.own_bytes)


def _check_finish(upload: Upload, finish: Finish) -> None:
    """Refuse a finish whose sha256 is malformed, contradicts the declared one, or would be dropped (keep_open),
    before the last part lands."""
    if finish.sha256 is None:
        return
    if finish.keep_open:
        # Kept open, the upload is completed later by CompleteUpload, which is where the sha256 is recorded.
        raise InvalidArgument.field("finish.sha256", "a finish with keep_open leaves the upload open: give the "
                                                     "sha256 to CompleteUpload instead")
    names.sha256_hex(finish.sha256, "finish.sha256")
    if upload.declared_sha256 and finish.sha256 != upload.declared_sha256:
        raise ChecksumMismatch(f"sha256 {finish.sha256} at finish differs from the declared {upload.declared_sha256}",
                               metadata={"declared_sha256": upload.declared_sha256})
