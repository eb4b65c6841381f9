"""Upload chunks read from the bytes gRPC received, and ReadFile messages encoded, without protobuf copying data.

A chunk message is almost all data. Parsed by protobuf, its data is copied into the message and copied once
more into a Python bytes object when read: two copies and two allocations of the chunk's size per message,
a large share of what receiving costs. `upload_request` recognises how a chunk is encoded (UploadRequest
field 2, length-delimited, holding UploadChunk field 1, the data, then optionally field 2, the crc32c) and
returns a `RawChunk` whose data is a view of the received bytes, with the data's CRC32C computed from the
CRC of the whole message (one pass, no copy: `crc_after` and `crc_between`). Anything else (a header, a
finish, an empty chunk, unknown or repeated fields, another field order) is parsed by protobuf, so what a
message means is protobuf's to say.

A ReadFile message is almost all data too: built by protobuf, the data is copied into the message, then again
when it is serialized. `read_response` encodes it as protobuf would (fields 1-4 in order, zero values left out)
with one copy (`b"".join`), and `serialize_response` passes such bytes through as the method's serializer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from quarry.v1 import upload_service_pb2 as pb

from server.domain.crc import crc32c, crc_after, crc_between

_CHUNK = 0x12  # field 2 (chunk), wire type 2 (length-delimited)
_DATA = 0x0A  # field 1 (data), wire type 2
_CRC = 0x10  # field 2 (crc32c), wire type 0 (varint)
_UINT32 = 0xFFFFFFFF


class _Other(Exception):
    """Not the encoding of a chunk that the fast path reads."""


@dataclass(frozen=True, slots=True)
class RawChunk:
    """An UploadRequest that carries a chunk, as received: its data a view of the message's bytes."""

    data: memoryview
    crc32c: int | None  # what the client sent, if it sent one
    data_crc: int  # the CRC32C of `data`, computed here
    size: int  # bytes of the whole message


def _varint(raw: bytes, position: int) -> tuple[int, int]:
    """The varint at `position` and the position after it."""
    value = shift = 0
    while position < len(raw) and shift < 64:
        byte = raw[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7
    raise _Other


def _chunk(raw: bytes) -> RawChunk:
    if not raw or raw[0] != _CHUNK:
        raise _Other
    length, position = _varint(raw, 1)
    if position + length != len(raw) or position >= len(raw) or raw[position] != _DATA:
        raise _Other
    size, start = _varint(raw, position + 1)
    end = start + size
    if end > len(raw) or size == 0:
        raise _Other
    claimed = None
    if end < len(raw):
        if raw[end] != _CRC:
            raise _Other
        claimed, after = _varint(raw, end + 1)
        if after != len(raw) or claimed > _UINT32:
            raise _Other
    whole, head = crc32c(raw), crc32c(raw[:start])
    data = memoryview(raw)[start:end]
    if claimed is None:
        return RawChunk(data, None, crc_after(whole, head, size), len(raw))
    if crc_between(whole, head, crc32c(raw[end:]), len(raw) - end, size, claimed):
        return RawChunk(data, claimed, claimed, len(raw))
    return RawChunk(data, claimed, crc32c(data), len(raw))  # a mismatch, refused downstream: its CRC for the error


def upload_request(raw: bytes) -> pb.UploadRequest | RawChunk:
    """An Upload stream's message: a chunk read in place when it is encoded as usual, else protobuf's parse."""
    try:
        return _chunk(raw)
    except _Other:
        return pb.UploadRequest.FromString(raw)


def message_size(message: pb.UploadRequest | RawChunk) -> int:
    """The bytes a received message took on the wire."""
    return message.size if isinstance(message, RawChunk) else message.ByteSize()


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def read_response(data: bytes, offset: int, file_size: int, sha256: str) -> bytes:
    """A serialized ReadFileResponse (data = 1, offset = 2, file_size_bytes = 3, sha256 = 4), as protobuf
    encodes it. Offsets and sizes are never negative."""
    digest = sha256.encode()
    return b"".join((
        b"\x0a" + _encode_varint(len(data)) if data else b"", data,
        b"\x10" + _encode_varint(offset) if offset else b"",
        b"\x18" + _encode_varint(file_size) if file_size else b"",
        b"\x22" + _encode_varint(len(digest)) + digest if digest else b""))


def serialize_response(message: Any) -> bytes:
    """A serializer for a method whose responses may come encoded already (bytes) or as messages."""
    return message if isinstance(message, bytes) else bytes(message.SerializeToString())
