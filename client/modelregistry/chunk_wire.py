"""Chunk messages read and written at the wire level, one copy per byte (SDK side).

Building a `DownloadChunk` copies its data into the message and serializing
copies it again; parsing an `UploadChunk` copies it into the message and
reading `.data` copies it once more. The data plane spends its time on
those copies, so the two chunk-carrying messages are encoded and decoded
here by hand: an outgoing chunk is its few header bytes, the data and the
CRC32C joined once; an incoming chunk's data is a `memoryview` of the bytes
gRPC received, never copied. Every other message (start, finish, header)
goes through protobuf as usual. The server keeps its own copy of this
module (it imports nothing of the SDK but the generated stubs); a test
holds both to protobuf's encoding.

The layout is that of `artifact_service.proto`: `DownloadResponse` and
`UploadRequest` both carry the chunk as field 2, and both chunk messages
are `offset = 1` (varint), `data = 2` (bytes), `crc32c = 3` (fixed32).
Decoding accepts any valid encoding of them (fields in any order, repeated
or unknown ones, as protobuf does); bytes that are not a valid message
raise `ValueError`, which the request parser answers as INVALID_REQUEST.
"""

from __future__ import annotations

from dataclasses import dataclass

from .v1 import artifact_service_pb2 as apb

_CHUNK_FIELD = 2
_CRC_TAG = b"\x1d"  # field 3, fixed32


@dataclass(frozen=True, slots=True)
class WireChunk:
    """A chunk as received: `data` is a view of the message's bytes."""

    offset: int
    data: memoryview
    crc32c: int


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_chunk(offset: int, data: bytes | memoryview, crc32c: int) -> bytes:
    """The serialized outer message (`DownloadResponse`/`UploadRequest`)
    carrying one chunk; its data is copied exactly once."""
    head = b"\x08" + _varint(offset) + b"\x12" + _varint(len(data))
    inner = len(head) + len(data) + 5
    return b"".join(
        (b"\x12", _varint(inner), head, data, _CRC_TAG, (crc32c & 0xFFFFFFFF).to_bytes(4, "little"))
    )


def _read_varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result & ((1 << 64) - 1), pos
        shift += 7


def _skip(buf: bytes, wire_type: int, pos: int, end: int) -> int:
    if wire_type == 0:
        return _read_varint(buf, pos, end)[1]
    if wire_type == 1:
        pos += 8
    elif wire_type == 2:
        length, pos = _read_varint(buf, pos, end)
        pos += length
    elif wire_type == 5:
        pos += 4
    else:
        raise ValueError(f"unsupported wire type {wire_type}")
    if pos > end:
        raise ValueError("truncated field")
    return pos


def _chunk_span(raw: bytes) -> tuple[int, int] | None:
    """Where the chunk message lies in `raw`, if the outer message is
    exactly one chunk field; None for anything else (left to protobuf)."""
    end = len(raw)
    pos = 0
    span: tuple[int, int] | None = None
    while pos < end:
        key, pos = _read_varint(raw, pos, end)
        field, wire_type = key >> 3, key & 7
        if field != _CHUNK_FIELD or wire_type != 2 or span is not None:
            return None
        length, pos = _read_varint(raw, pos, end)
        if pos + length > end:
            raise ValueError("truncated chunk")
        span = (pos, pos + length)
        pos += length
    return span


def decode_chunk(raw: bytes) -> WireChunk | None:
    """The chunk `raw` carries, or None when it is another kind of message."""
    span = _chunk_span(raw)
    if span is None:
        return None
    pos, end = span
    offset = crc = 0
    data = (0, 0)
    while pos < end:
        key, pos = _read_varint(raw, pos, end)
        field, wire_type = key >> 3, key & 7
        if field == 1 and wire_type == 0:
            offset, pos = _read_varint(raw, pos, end)
            if offset >= 1 << 63:
                offset -= 1 << 64
        elif field == 2 and wire_type == 2:
            length, pos = _read_varint(raw, pos, end)
            if pos + length > end:
                raise ValueError("truncated chunk data")
            data = (pos, pos + length)
            pos += length
        elif field == 3 and wire_type == 5:
            if pos + 4 > end:
                raise ValueError("truncated crc32c")
            crc = int.from_bytes(raw[pos : pos + 4], "little")
            pos += 4
        else:
            pos = _skip(raw, wire_type, pos, end)
    return WireChunk(offset, memoryview(raw)[data[0] : data[1]], crc)


def download_response(raw: bytes) -> WireChunk | apb.DownloadResponse:
    """Response deserializer of Download: chunks by hand, the header by protobuf."""
    chunk = decode_chunk(raw)
    if chunk is not None:
        return chunk
    return apb.DownloadResponse.FromString(raw)
