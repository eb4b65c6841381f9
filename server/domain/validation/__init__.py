"""Validation of a staged object: one streaming pass that hashes it, detects its format, parses it, and
applies the dataset's rules. CPU work runs in worker threads; memory stays flat in the file's size."""

from __future__ import annotations

import asyncio
import codecs
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from server.domain.validation.detect import SNIFF_BYTES, detect
from server.domain.validation.parquet import validate_parquet
from server.domain.validation.reader import StreamedObject
from server.domain.validation.rules import check_after_reading, check_before_reading
from server.domain.validation.tabular import BLOCK_BYTES, validate_csv, validate_jsonl
from server.model.datasets import DatasetRules, FileFormat
from server.model.objects import ObjectReads
from server.model.report import ColumnInfo, Issue, Report

__all__ = ["Report", "validate_object"]

READ_CHUNK = 1 << 20


async def validate_object(store: ObjectReads, key: str, size: int, path: str, content_type: str,
                          rules: DatasetRules, previous: Sequence[ColumnInfo] | None) -> Report:
    """Validate the object at `key` (of `size` bytes) that will become `path` in a version."""
    report = Report()
    head = await store.read_range(key, 0, min(size, SNIFF_BYTES)) if size else b""
    tail = await store.read_range(key, size - 8, 8) if size >= 8 else head
    report.format, report.detected_by = detect(path, content_type, head, tail)
    check_before_reading(rules, report, size)
    if not report.ok:
        return report
    count_lines = report.format == FileFormat.JSONL  # pyarrow gives CSV errors their row itself
    # CSV and JSON Lines come in chunks of the parser's block size: each is handed to pyarrow as it is (no copy).
    chunk = BLOCK_BYTES if report.format in (FileFormat.CSV, FileFormat.JSONL) else READ_CHUNK
    source = StreamedObject(await store.open_sequential(key, chunk), count_lines=count_lines)
    try:
        if report.format == FileFormat.PARQUET:
            await _parquet(store, key, size, source, report)
        else:
            await asyncio.to_thread(_stream, source, report)
        report.sha256 = await asyncio.to_thread(source.sha256)
        report.bytes_read = source.bytes_read
    finally:
        await asyncio.to_thread(source.close)
    check_after_reading(rules, report, previous)
    return report


def _stream(source: StreamedObject, report: Report) -> None:
    if report.format == FileFormat.CSV:
        validate_csv(source, report)
    elif report.format == FileFormat.JSONL:
        validate_jsonl(source, report)
    elif report.format == FileFormat.TEXT:
        _validate_text(source, report)
    source.drain()


def _validate_text(source: StreamedObject, report: Report) -> None:
    """Text must be UTF-8; the first bad byte is reported with its line."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    lines = 1
    buffer = bytearray(READ_CHUNK)
    while True:
        count = source.readinto(buffer)
        chunk = bytes(buffer[:count])
        try:
            decoder.decode(chunk, final=count == 0)
        except UnicodeDecodeError as exc:
            line = lines + chunk[:max(exc.start, 0)].count(b"\n")
            report.error(Issue("INVALID_UTF8", f"line {line} is not UTF-8 text", line=line))
            return
        if count == 0:
            return
        lines += chunk.count(b"\n")


async def _parquet(store: ObjectReads, key: str, size: int, source: StreamedObject, report: Report) -> None:
    random = await store.open_random(key, size)
    try:
        if not random.remote:
            # Range reads are cheap: pyarrow reads the object in place while the hash is taken in another thread.
            await asyncio.gather(asyncio.to_thread(source.drain), asyncio.to_thread(validate_parquet, random, report))
            return
    finally:
        await asyncio.to_thread(random.close)
    # Parquet needs random access: keep the one streamed read in a temporary file.
    with tempfile.NamedTemporaryFile(prefix="quarry-validate-", suffix=".parquet") as spool:
        await asyncio.to_thread(shutil.copyfileobj, source, spool, READ_CHUNK)
        await asyncio.to_thread(spool.flush)
        await asyncio.to_thread(validate_parquet, Path(spool.name), report)
