"""The validation engine on its own: format detection, first errors with lines, statistics, rules."""

from __future__ import annotations

import hashlib
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from server.domain.validation import validate_object
from server.domain.validation.reader import StreamedObject
from server.domain.validation.rules import RULE_CODES
from server.model.datasets import DatasetRules, FileFormat
from server.model.report import ColumnInfo, Report
from server.storage.objects.local import LocalStore
from server.storage.objects.memory import ChunkedBytes


@pytest.fixture
async def store(tmp_path: Path) -> LocalStore:
    return await LocalStore(tmp_path).open()


async def validate(store: LocalStore, name: str, data: bytes, *, content_type: str = "",
                   rules: DatasetRules | None = None, previous: list[ColumnInfo] | None = None) -> Report:
    async def chunks() -> AsyncIterator[bytes]:
        yield data

    key = f"k/{abs(hash((name, data)))}"
    await store.put(key, chunks())
    return await validate_object(store, key, len(data), name, content_type, rules or DatasetRules(), previous)


def parquet_bytes(table: pa.Table, **options: object) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, **options)  # type: ignore[arg-type]
    return buffer.getvalue()


@pytest.mark.parametrize("name, content_type, data, expected, how", [
    ("t.csv", "", b"a,b\n1,2\n", FileFormat.CSV, "extension"),
    ("t.ndjson", "", b'{"a": 1}\n', FileFormat.JSONL, "extension"),
    ("noext", "text/csv", b"a,b\n1,2\n", FileFormat.CSV, "content_type"),
    ("noext", "", b'{"a": 1}\n{"a": 2}\n', FileFormat.JSONL, "sniff"),
    ("noext", "", b"plain words\n", FileFormat.TEXT, "sniff"),
    ("noext", "", b"\x00\x01\x02\xff" * 100, FileFormat.BINARY, "sniff"),
    ("misnamed.csv", "", parquet_bytes(pa.table({"x": [1, 2]})), FileFormat.PARQUET, "magic"),
])
async def test_format_detection(store: LocalStore, name: str, content_type: str, data: bytes,
                                expected: FileFormat, how: str) -> None:
    report = await validate(store, name, data, content_type=content_type)
    assert (report.format, report.detected_by) == (expected, how)
    assert report.sha256 == hashlib.sha256(data).hexdigest() and report.bytes_read == len(data)


async def test_ragged_rows_are_reported_by_line_and_counted(store: LocalStore) -> None:
    data = b"a,b,c\n1,2,3\n4,5\n6,7,8\n9,10,11,12\n"
    report = await validate(store, "r.csv", data)
    assert [(e.code, e.line) for e in report.errors] == [("RAGGED_ROW", 3), ("RAGGED_ROW", 5)]
    assert report.error_count == 2 and not report.ok


async def test_a_csv_without_a_header_is_invalid(store: LocalStore) -> None:
    for data in (b"", b"\n"):
        report = await validate(store, "empty.csv", data)
        assert [e.code for e in report.errors] == ["INVALID_CSV"] and not report.ok, data
    assert (await validate(store, "header.csv", b"a,b\n")).ok


async def test_a_late_type_change_is_reported_with_its_line(store: LocalStore) -> None:
    rows = 600_000  # beyond the first block, where pyarrow infers the types
    data = b"n,s\n" + b"".join(b"%d,x\n" % i for i in range(rows)) + b"oops,y\n"
    report = await validate(store, "t.csv", data)
    [error] = report.errors
    assert (error.code, error.line, error.column) == ("TYPE_MISMATCH", rows + 2, "n")


async def test_broken_json_line(store: LocalStore) -> None:
    report = await validate(store, "e.jsonl", b'{"a": 1}\n{"a": 2}\n{"a": [\n{"a": 4}\n')
    assert [(e.code, e.line) for e in report.errors] == [("INVALID_JSON", 3)]


async def test_parquet_truncated_and_corrupt(store: LocalStore) -> None:
    data = parquet_bytes(pa.table({"x": list(range(10_000))}), row_group_size=1000)
    truncated = await validate(store, "t.parquet", data[: len(data) // 2])
    assert truncated.errors[0].code == "INVALID_PARQUET"
    assert (await validate(store, "ok.parquet", data)).row_count == 10_000
    # One byte flipped in the middle of a data page, the footer intact: the page's checksum catches it.
    data = parquet_bytes(pa.table({"x": list(range(10_000))}), row_group_size=1000, write_page_checksum=True)
    chunk = pq.ParquetFile(io.BytesIO(data)).metadata.row_group(4).column(0)
    end = (chunk.dictionary_page_offset or chunk.data_page_offset) + chunk.total_compressed_size
    flipped = bytearray(data)
    flipped[(chunk.data_page_offset + end) // 2] ^= 0xFF
    corrupt = await validate(store, "c.parquet", bytes(flipped))
    assert [e.code for e in corrupt.errors] == ["CORRUPT_PAGE"] and not corrupt.ok
    assert (await validate(store, "ok.parquet", data)).row_count == 10_000


def _varint(value: int) -> bytes:
    """Thrift's compact protocol: an i64 is a zigzag varint."""
    value = (value << 1) ^ (value >> 63)
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(out + bytes([value]))


async def test_a_footer_that_miscounts_the_rows(store: LocalStore) -> None:
    # Two row groups of 6,000 rows; the file's own count (FileMetaData field 3, an i64: header byte 0x16) then
    # says 12,001. Each row group still says 6,000, so the pages decode: only the total is wrong.
    data = bytearray(parquet_bytes(pa.table({"x": list(range(12_000))}), row_group_size=6000))
    footer = len(data) - 8 - int.from_bytes(data[-8:-4], "little")
    field = b"\x16" + _varint(12_000)
    assert data.count(field, footer) == 1
    at = data.index(field, footer)
    data[at:at + len(field)] = b"\x16" + _varint(12_001)
    assert pq.ParquetFile(io.BytesIO(bytes(data))).metadata.num_rows == 12_001
    report = await validate(store, "miscounted.parquet", bytes(data))
    assert [e.code for e in report.errors] == ["ROW_COUNT_MISMATCH"] and not report.ok
    assert "12001" in report.errors[0].message and "12000" in report.errors[0].message


async def test_text_must_be_utf8(store: LocalStore) -> None:
    assert (await validate(store, "ok.txt", "é\nü\n".encode())).ok
    bad = await validate(store, "bad.txt", b"one\ntwo\n\xc3\x28\n")
    assert [(e.code, e.line) for e in bad.errors] == [("INVALID_UTF8", 3)]


async def test_statistics(store: LocalStore) -> None:
    rows = 50_000
    csv = "k,v,n\n" + "".join(f"{i},v{i % 700},{'' if i % 10 == 0 else i % 3}\n" for i in range(rows))
    report = await validate(store, "s.csv", csv.encode())
    stats = {s.name: s for s in report.stats}
    assert (stats["k"].min, stats["k"].max, stats["k"].null_count) == ("0", str(rows - 1), 0)
    assert abs(stats["k"].distinct_estimate - rows) / rows < 0.05
    assert abs(stats["v"].distinct_estimate - 700) / 700 < 0.05 and stats["v"].min == "v0"
    assert stats["n"].null_count == rows // 10 and stats["n"].distinct_estimate == 3
    nanos = pa.table({"t": pa.array([1_700_000_000_123_456_789, None], pa.timestamp("ns"))})
    parquet = await validate(store, "n.parquet", parquet_bytes(nanos))
    assert parquet.stats[0].min.endswith(".123456789") and parquet.stats[0].null_count == 1


async def test_rules(store: LocalStore) -> None:
    data = b"id,name\n1,a\n2,b\n"
    rules = DatasetRules(max_file_bytes=5, allowed_formats=(FileFormat.PARQUET,))
    assert {e.code for e in (await validate(store, "r.csv", data, rules=rules)).errors} == \
        {"FILE_TOO_LARGE", "FORMAT_NOT_ALLOWED"}
    rules = DatasetRules(min_rows=3, required_columns=("id", "email"))
    assert {e.code for e in (await validate(store, "r.csv", data, rules=rules)).errors} == \
        {"TOO_FEW_ROWS", "MISSING_COLUMN"}
    assert {"FILE_TOO_LARGE", "FORMAT_NOT_ALLOWED", "TOO_FEW_ROWS", "MISSING_COLUMN"} <= RULE_CODES


async def test_schema_compatibility(store: LocalStore) -> None:
    previous = [ColumnInfo("id", "int32"), ColumnInfo("name", "string"), ColumnInfo("gone", "string")]
    report = await validate(store, "c.parquet", parquet_bytes(pa.table({
        "id": pa.array([1], pa.int64()), "name": pa.array([1.5]), "added": pa.array([1])})), previous=previous)
    assert {(e.code, e.column) for e in report.errors} == {("COLUMN_REMOVED", "gone"), ("COLUMN_RETYPED", "name")}
    assert {e.code for e in report.errors} <= RULE_CODES  # so the pipeline fails them as RuleViolation
    # int32 -> int64 widens: not an error. And with breaking changes allowed, the rest are warnings only.
    allowed = await validate(store, "c.parquet", parquet_bytes(pa.table({"id": pa.array([1], pa.int64())})),
                             rules=DatasetRules(allow_breaking_schema_changes=True), previous=previous)
    assert allowed.ok and {w.code for w in allowed.warnings} == {"COLUMN_REMOVED"}


@pytest.mark.parametrize("chunk", [7, 4096, 10_000])
def test_the_parser_reads_whole_blocks_across_any_chunking(chunk: int) -> None:
    data = b"".join(b"%d,row %d\n" % (i, i) for i in range(3000))
    source = StreamedObject(ChunkedBytes(data, chunk))
    pieces = []
    while block := source.read(4096):
        pieces.append(block)
    source.close()
    # Full blocks but the last (a short read would make pyarrow's batches a chunk long), every byte in order.
    assert b"".join(pieces) == data and all(len(p) == 4096 for p in pieces[:-1])
    assert source.sha256() == hashlib.sha256(data).hexdigest()
    if chunk == 4096:  # a chunk that is exactly a block is handed over as it is, not copied
        chunks = RecordedChunks(data, 4096)
        whole = StreamedObject(chunks)
        assert whole.read(4096) is chunks.given[0]
        whole.close()


class RecordedChunks(ChunkedBytes):
    """Keeps every chunk it hands out."""

    def __init__(self, data: bytes, chunk_bytes: int) -> None:
        super().__init__(data, chunk_bytes)
        self.given: list[bytes] = []

    def next_chunk(self) -> bytes:
        self.given.append(super().next_chunk())
        return self.given[-1]
