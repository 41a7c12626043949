"""Chunk messages encoded and decoded by hand (server and SDK copies) agree
with protobuf's own encoding, whatever valid encoding a peer chooses."""

from __future__ import annotations

from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st
from modelregistry import chunk_wire as sdk_wire
from modelregistry.v1 import artifact_service_pb2 as apb
from modelregistry_server.api import chunk_wire as server_wire

WIRES = pytest.mark.parametrize("wire", [server_wire, sdk_wire], ids=["server", "sdk"])
offsets = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
crcs = st.integers(min_value=0, max_value=(1 << 32) - 1)


@WIRES
@given(offset=offsets, data=st.binary(max_size=300), crc=crcs)
def test_encoded_chunk_is_what_protobuf_reads(
    wire: ModuleType, offset: int, data: bytes, crc: int
) -> None:
    raw = wire.encode_chunk(offset, data, crc)
    for message_type in (apb.DownloadResponse, apb.UploadRequest):
        message = message_type.FromString(raw)
        assert message.WhichOneof("kind") == "chunk"
        assert (message.chunk.offset, message.chunk.data, message.chunk.crc32c) == (
            offset,
            data,
            crc,
        )


@WIRES
@given(offset=offsets, data=st.binary(max_size=300), crc=crcs)
def test_protobuf_chunks_decode_without_copying(
    wire: ModuleType, offset: int, data: bytes, crc: int
) -> None:
    raw = apb.UploadRequest(
        chunk=apb.UploadChunk(offset=offset, data=data, crc32c=crc)
    ).SerializeToString()
    chunk = wire.decode_chunk(raw)
    assert chunk is not None
    assert (chunk.offset, bytes(chunk.data), chunk.crc32c) == (offset, data, crc)
    assert isinstance(chunk.data, memoryview) and chunk.data.obj is raw


@WIRES
def test_fields_in_any_order_and_unknown_ones_are_accepted(wire: ModuleType) -> None:
    # crc32c first, an unknown varint field 9 and fixed64 field 10, then data, then offset.
    inner = (
        b"\x1d\x04\x03\x02\x01" + b"\x48\x05" + b"\x51" + bytes(8) + b"\x12\x03abc" + b"\x08\x07"
    )
    raw = b"\x12" + bytes([len(inner)]) + inner
    chunk = wire.decode_chunk(raw)
    assert chunk is not None
    assert (chunk.offset, bytes(chunk.data), chunk.crc32c) == (7, b"abc", 0x01020304)
    parsed = apb.DownloadResponse.FromString(raw).chunk
    assert (parsed.offset, parsed.data, parsed.crc32c) == (7, b"abc", 0x01020304)


@WIRES
def test_other_messages_are_left_to_protobuf(wire: ModuleType) -> None:
    start = apb.UploadRequest(start=apb.UploadStart(size_bytes=5)).SerializeToString()
    header = apb.DownloadResponse(header=apb.DownloadHeader(media_type="x")).SerializeToString()
    assert wire.decode_chunk(start) is None
    assert wire.decode_chunk(header) is None
    assert wire.decode_chunk(b"") is None


@WIRES
@pytest.mark.parametrize(
    "raw",
    [b"\x12\x05\x08\x01", b"\x12\x05\x12\x09abc", b"\x12\x02\x1d\x01", b"\x12\x01\xff"],
    ids=["outer-truncated", "data-truncated", "crc-truncated", "varint-truncated"],
)
def test_truncated_bytes_are_refused(wire: ModuleType, raw: bytes) -> None:
    with pytest.raises(ValueError):
        wire.decode_chunk(raw)


def test_server_upload_request_and_download_response() -> None:
    chunk = server_wire.upload_request(sdk_wire.encode_chunk(3, b"xyz", 9))
    assert isinstance(chunk, server_wire.WireChunk)
    assert bytes(chunk.data) == b"xyz"
    finish = apb.UploadRequest(finish=apb.UploadFinish(digest="d")).SerializeToString()
    assert server_wire.upload_request(finish) == apb.UploadRequest.FromString(finish)
    header = apb.DownloadResponse(header=apb.DownloadHeader(media_type="m"))
    assert server_wire.download_response(header) == header.SerializeToString()
    assert server_wire.download_response(b"raw") == b"raw"
