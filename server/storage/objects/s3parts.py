"""Streaming a Quarry part into S3 as several smaller S3 parts.

Holding a whole Quarry part (up to 128 MiB) per stream before sending it would cost memory and stall the
stream while it uploads. Instead each Quarry part maps to `k` consecutive S3 part numbers of about 8 MiB:
each is sent as soon as it is full (one in flight per part; the previous part may still be landing) while
the stream keeps receiving. Memory per stream is about one S3 part being filled, plus at most one in flight; the
server-wide slot semaphore bounds parts in flight across all streams. The part's etag records the S3
parts it became (JSON), so completion lists them all. S3 allows at most 10,000 parts, so `k` shrinks for
files with many parts, down to 1 (the whole part buffered) when the part count is unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import Sequence
from typing import Protocol

from server.model.objects import CompletedPart, PartWriter

S3_MAX_PARTS = 10_000
SUB_PART_BYTES = 8 << 20
IN_FLIGHT = 1


class _PartUploader(Protocol):
    part_slots: asyncio.Semaphore

    async def upload_part_body(self, key: str, upload_id: str, number: int, body: io.BytesIO) -> str: ...


def sub_parts(part_size: int, part_count: int) -> tuple[int, int]:
    """(S3 parts per Quarry part, bytes per S3 part) for parts of `part_size` in a file of `part_count` parts."""
    per_part = max(1, min(part_size // SUB_PART_BYTES, S3_MAX_PARTS // max(1, part_count)))
    return per_part, -(-part_size // per_part)


def s3_parts(parts: Sequence[CompletedPart]) -> list[tuple[int, str]]:
    """The (S3 part number, etag) pairs that Quarry parts became, ascending."""
    expanded: list[tuple[int, str]] = []
    for part in parts:
        if part.etag.startswith("["):
            expanded.extend((int(number), str(etag)) for number, etag in json.loads(part.etag))
        else:
            expanded.append((part.number, part.etag))
    return sorted(expanded)


class StreamedPart(PartWriter):
    """Sends each full S3 part while the next fills; `commit` waits for all and returns their etags."""

    def __init__(self, uploader: _PartUploader, key: str, upload_id: str, number: int, offset: int,
                 part_size: int, part_count: int) -> None:
        per_part, self._sub_size = sub_parts(part_size, part_count)
        self._uploader = uploader
        self._key = key
        self._upload_id = upload_id
        self._next_number = (number - 1) * per_part + 1
        self._offset = offset
        self._fill_size = min(self._sub_size, part_size)
        # Filled in place and handed to the HTTP layer as it is: botocore turns a bytes body into a BytesIO
        # and aiohttp then takes its buffer, which would copy a shared BytesIO once more.
        self._buffer = io.BytesIO()
        self._in_flight: dict[int, asyncio.Task[str]] = {}
        self._etags: dict[int, str] = {}
        self.size = 0

    @property
    def _filled(self) -> int:
        return self._buffer.tell()

    async def write(self, data: memoryview) -> None:
        while data:
            take = min(len(data), self._fill_size - self._filled)
            self._buffer.write(data[:take])
            self.size += take
            data = data[take:]
            if self._filled == self._fill_size:
                await self._send()

    async def _send(self) -> None:
        while len(self._in_flight) >= IN_FLIGHT:
            await self._collect(asyncio.FIRST_COMPLETED)
        # A server-wide bound on S3 parts in flight: many streams share it, so memory stays bounded. The
        # stream waits here with its buffer full, which is what slows its client down.
        await self._uploader.part_slots.acquire()
        body, self._buffer = self._buffer, io.BytesIO()
        body.seek(0)
        number, self._next_number = self._next_number, self._next_number + 1
        task = asyncio.create_task(self._uploader.upload_part_body(self._key, self._upload_id, number, body))
        task.add_done_callback(lambda _: self._uploader.part_slots.release())
        self._in_flight[number] = task

    async def _collect(self, when: str) -> None:
        done, _ = await asyncio.wait(self._in_flight.values(), return_when=when)
        for number, task in list(self._in_flight.items()):
            if task in done:
                del self._in_flight[number]
                self._etags[number] = task.result()  # raises the upload's error, if any

    async def commit(self) -> str:
        if self._filled or not self._etags and not self._in_flight:
            await self._send()
        self._buffer = io.BytesIO()  # the stream may open its next part while this one lands
        if self._in_flight:
            await self._collect(asyncio.ALL_COMPLETED)
        return json.dumps(sorted(self._etags.items()), separators=(",", ":"))

    async def discard(self) -> None:
        for task in self._in_flight.values():
            task.cancel()
        for task in self._in_flight.values():
            with contextlib.suppress(BaseException):
                await task
        self._in_flight.clear()
        self._buffer = io.BytesIO()
