"""Upload chunk messages encoded by hand: the one message the SDK sends by the million.

Built by protobuf, a chunk's data is copied into an UploadChunk, again into its UploadRequest, and once more
when it is serialized; encoded here it is copied once (`b"".join`), which with 1 MiB chunks doubles what one
Python client sends (measured against a server that discards: ~700 against ~1,350 MB/s). The encoding is
protobuf's own (field 2 of UploadRequest holding field 1, the data, and field 2, the CRC32C, of UploadChunk),
so the server and any other reader parse it as the message it is; the tests check it against protobuf's.
"""

from __future__ import annotations

from typing import Any

__all__ = ["encode_chunk", "serialize_request"]

_CHUNK = b"\x12"  # UploadRequest.chunk: field 2, length-delimited
_DATA = b"\x0a"  # UploadChunk.data: field 1, length-delimited
_CRC = b"\x10"  # UploadChunk.crc32c: field 2, varint


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_chunk(data: bytes, crc32c: int | None = None) -> bytes:
    """The serialized UploadRequest carrying `data` as its chunk, with its CRC32C when given."""
    head = _DATA + _varint(len(data)) if data else b""
    tail = _CRC + _varint(crc32c) if crc32c is not None else b""
    return b"".join((_CHUNK, _varint(len(head) + len(data) + len(tail)), head, data, tail))


def serialize_request(request: Any) -> bytes:
    """The Upload stream's serializer: chunks arrive encoded already (bytes), other messages as messages."""
    return request if isinstance(request, bytes) else bytes(request.SerializeToString())
