"""Messages encoded and read by hand: upload chunks encoded by the SDK (clients/python/src/quarry/_wire.py) and
read in place by the server, ReadFile messages encoded by the server (server/api/wire.py). Each must be exactly
what protobuf's own encoding and parse make of it, and the data's CRC32C the server derives from the whole
message must be the data's own."""

from __future__ import annotations

import os

import google_crc32c
import pytest
from quarry._wire import encode_chunk, serialize_request
from quarry.v1 import dataset_service_pb2 as dpb
from quarry.v1 import upload_service_pb2 as pb

from server.api.wire import RawChunk, message_size, read_response, serialize_response, upload_request
from server.domain.crc import combine, crc32c, crc_after, crc_between

SIZES = [1, 127, 128, 300, 16_383, 16_384, 1 << 20, (1 << 20) + 7]
CRCS = [None, 0, 1, 0x7F, 0x80, 0xE3069283, 0xFFFFFFFF]


def _protobuf(data: bytes, crc: int | None) -> pb.UploadRequest:
    chunk = pb.UploadChunk(data=data)
    if crc is not None:
        chunk.crc32c = crc
    return pb.UploadRequest(chunk=chunk)


@pytest.mark.parametrize("size", [0, *SIZES])
@pytest.mark.parametrize("crc", CRCS)
def test_the_sdk_encodes_a_chunk_as_protobuf_does(size: int, crc: int | None) -> None:
    data = os.urandom(size)
    assert encode_chunk(data, crc) == _protobuf(data, crc).SerializeToString()
    assert serialize_request(encode_chunk(data, crc)) == encode_chunk(data, crc)  # encoded chunks pass as they are
    header = pb.UploadRequest(header=pb.UploadHeader(upload="u", write_offset=5))
    assert serialize_request(header) == header.SerializeToString()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("crc", [None, "right", "wrong"])
def test_the_server_reads_a_chunk_in_place_with_its_data_crc(size: int, crc: str | None) -> None:
    data = os.urandom(size)
    right = google_crc32c.value(data)
    claimed = None if crc is None else right if crc == "right" else right ^ 1
    raw = _protobuf(data, claimed).SerializeToString()
    read = upload_request(raw)
    assert isinstance(read, RawChunk)
    assert bytes(read.data) == data and read.crc32c == claimed and read.size == len(raw) == message_size(read)
    assert read.data_crc == right  # computed, never taken from the client (a wrong claim is refused downstream)


@pytest.mark.parametrize("message", [
    pb.UploadRequest(header=pb.UploadHeader(upload="namespaces/n/uploads/u", write_offset=3)),
    pb.UploadRequest(finish=pb.UploadFinish(sha256="a" * 64, keep_open=False)),
    pb.UploadRequest(chunk=pb.UploadChunk()),  # an empty chunk
    pb.UploadRequest(chunk=pb.UploadChunk(crc32c=5)),  # a CRC and no data
    pb.UploadRequest(),
])
def test_other_messages_are_protobufs_parse(message: pb.UploadRequest) -> None:
    read = upload_request(message.SerializeToString())
    assert isinstance(read, pb.UploadRequest) and read == message
    assert message_size(read) == message.ByteSize()


def _field(number: int, wire_type: int, payload: bytes) -> bytes:
    return bytes([number << 3 | wire_type]) + payload


def _length(payload: bytes) -> bytes:
    assert len(payload) < 128
    return bytes([len(payload)]) + payload


@pytest.mark.parametrize("chunk", [
    _field(2, 0, b"\x05") + _field(1, 2, _length(b"data")),  # the CRC before the data
    _field(1, 2, _length(b"old")) + _field(1, 2, _length(b"new")),  # the data twice: the last one counts
    _field(1, 2, _length(b"data")) + _field(3, 0, b"\x01"),  # an unknown field after the data
    _field(1, 2, _length(b"data")) + _field(2, 0, b"\x80\x80\x80\x80\x10"),  # a CRC past 32 bits
])
def test_unusual_encodings_of_a_chunk_mean_what_protobuf_says(chunk: bytes) -> None:
    raw = _field(2, 2, _length(chunk))
    expected = pb.UploadRequest.FromString(raw)
    read = upload_request(raw)
    assert isinstance(read, pb.UploadRequest) and read == expected


def test_a_chunk_and_a_header_in_one_message_is_protobufs_to_read() -> None:
    raw = encode_chunk(b"data", 7) + pb.UploadRequest(header=pb.UploadHeader(upload="u")).SerializeToString()
    read = upload_request(raw)
    assert isinstance(read, pb.UploadRequest) and read.WhichOneof("kind") == "header"  # the last oneof wins


def test_truncated_messages_are_refused_as_protobuf_refuses_them() -> None:
    raw = encode_chunk(os.urandom(1000), 9)
    for cut in (1, 2, 3, 500, len(raw) - 1):
        with pytest.raises(Exception):  # noqa: B017, PT011 (protobuf's DecodeError; grpc answers INTERNAL)
            pb.UploadRequest.FromString(raw[:cut])
        with pytest.raises(Exception):  # noqa: B017, PT011
            upload_request(raw[:cut])


@pytest.mark.parametrize("lengths", [(0, 5, 0), (3, 0, 4), (7, 1 << 20, 6), (1, 300, 1 << 16)])
def test_crcs_of_pieces_inside_a_buffer(lengths: tuple[int, int, int]) -> None:
    head, middle, tail = (os.urandom(n) for n in lengths)
    whole = crc32c(head + middle + tail)
    assert combine(combine(crc32c(head), crc32c(middle), len(middle)), crc32c(tail), len(tail)) == whole
    assert crc_after(crc32c(head + middle), crc32c(head), len(middle)) == crc32c(middle)
    assert crc_between(whole, crc32c(head), crc32c(tail), len(tail), len(middle), crc32c(middle))
    assert not crc_between(whole, crc32c(head), crc32c(tail), len(tail), len(middle), crc32c(middle) ^ 0x100)


@pytest.mark.parametrize("size", [0, 1, 127, 128, 1 << 20])
@pytest.mark.parametrize(("offset", "file_size"), [(0, 0), (0, 5), (1, 1 << 20), (127, 128), ((1 << 40) + 3, 1 << 41)])
@pytest.mark.parametrize("sha256", ["", "ab" * 32])
def test_the_server_encodes_a_read_as_protobuf_does(size: int, offset: int, file_size: int, sha256: str) -> None:
    data = os.urandom(size)
    message = dpb.ReadFileResponse(data=data, offset=offset, file_size_bytes=file_size, sha256=sha256)
    encoded = read_response(data, offset, file_size, sha256)
    assert encoded == message.SerializeToString() and dpb.ReadFileResponse.FromString(encoded) == message
    assert serialize_response(encoded) is encoded and serialize_response(message) == encoded
