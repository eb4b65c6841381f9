"""Format detection: Parquet by its magic bytes, then the path's extension, the content type, and a sniff."""

from __future__ import annotations

import json
from pathlib import PurePosixPath

from server.model.datasets import FileFormat

PARQUET_MAGIC = b"PAR1"
_EXTENSIONS = {
    ".csv": FileFormat.CSV, ".jsonl": FileFormat.JSONL, ".ndjson": FileFormat.JSONL,
    ".parquet": FileFormat.PARQUET, ".pq": FileFormat.PARQUET,
    ".txt": FileFormat.TEXT, ".md": FileFormat.TEXT, ".log": FileFormat.TEXT, ".tsv": FileFormat.TEXT,
}
_CONTENT_TYPES = {
    "text/csv": FileFormat.CSV, "application/csv": FileFormat.CSV,
    "application/x-ndjson": FileFormat.JSONL, "application/jsonl": FileFormat.JSONL,
    "application/json-lines": FileFormat.JSONL, "application/x-jsonlines": FileFormat.JSONL,
    "application/vnd.apache.parquet": FileFormat.PARQUET, "application/x-parquet": FileFormat.PARQUET,
    "text/plain": FileFormat.TEXT, "text/markdown": FileFormat.TEXT,
}
SNIFF_BYTES = 64 * 1024


def detect(path: str, content_type: str, head: bytes, tail: bytes) -> tuple[FileFormat, str]:
    """The format of a file and how it was detected ("magic", "extension", "content_type" or "sniff").

    `head` and `tail` are the first and last bytes of the file (up to SNIFF_BYTES).
    """
    if head.startswith(PARQUET_MAGIC) and tail.endswith(PARQUET_MAGIC):
        return FileFormat.PARQUET, "magic"
    suffix = PurePosixPath(path).suffix.lower()
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix], "extension"
    media = content_type.split(";")[0].strip().lower()
    if media in _CONTENT_TYPES:
        return _CONTENT_TYPES[media], "content_type"
    return _sniff(head), "sniff"


def _sniff(head: bytes) -> FileFormat:
    if not head:
        return FileFormat.BINARY
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a character cut at the end of the sample
            return FileFormat.BINARY
        text = head[:exc.start].decode("utf-8")
    if "\x00" in text:
        return FileFormat.BINARY
    first = text.split("\n", 1)[0].strip()
    if first.startswith("{"):
        try:
            if isinstance(json.loads(first), dict):
                return FileFormat.JSONL
        except ValueError:
            pass
    return FileFormat.TEXT
