"""The stored format of an encrypted blob (and of its staging, which is its prefix).

    header   HEADER_SIZE bytes: magic, then JSON {key_id, wrapped, blob_id}, zero padded
    record*  u32 plaintext length | 12-byte nonce | AES-256-GCM ciphertext and tag
    trailer  one more record, flagged final: sha256 of the plaintext, its size, and
             the plaintext length of every content record (the index)
    footer   u32 record count | u32 trailer record size | magic

Content records hold at most `SEGMENT_SIZE` plaintext bytes. They are full
except where an upload was flushed (each flush that ends mid-segment closes a
short record: an acknowledged byte must be durable, and a record once written
is never rewritten) and at the end, so the trailer's index is what maps a
plaintext offset to a record.

Every record is sealed under the blob's own random data key with a random
nonce (no nonce is derived, so a resumed upload can never reuse one) and
associated data binding the blob id, the record's index, its plaintext offset
and length, and the final flag: records cannot be reordered, dropped, moved
into another blob or cut short without failing authentication, and a blob
whose trailer is missing is truncated. The trailer also names the digest, so
a blob file put in place of another is refused before a byte is served.

The header is written once, at the start of the staging, and changes only when
its data key is rewrapped (fixed size, so content offsets never move).
"""

from __future__ import annotations

import base64
import json
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Every server reads the format's sizes (see `stored_form`), not only one
    # that encrypts: `cryptography` loads with the code that makes the AESGCMs.
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SEGMENT_SIZE = 1024 * 1024
HEADER_SIZE = 1024
FOOTER_SIZE = 16
NONCE_SIZE = 12
TAG_SIZE = 16
RECORD_OVERHEAD = 4 + NONCE_SIZE + TAG_SIZE
BLOB_ID_SIZE = 16

_MAGIC = b"MRENC\x00v1"
_FOOTER_MAGIC = b"MREND\x00v1"
_AAD = struct.Struct(">8sQQIB")  # label, index, plaintext offset, length, final
_AAD_LABEL = b"MRSEG\x00v1"
_U32 = struct.Struct(">I")
_FOOTER = struct.Struct(">II8s")
_TRAILER_HEAD = struct.Struct(">32sQI")


class FormatError(Exception):
    """Stored bytes that are not what was written: damaged, truncated or swapped."""

    def __init__(self, what: str, offset: int) -> None:
        super().__init__(what)
        self.what = what
        # Plaintext offset of the damaged record (or where the damage shows).
        self.offset = offset


@dataclass(frozen=True)
class Header:
    key_id: str
    wrapped: bytes
    blob_id: bytes

    @property
    def context(self) -> bytes:
        """What a wrapped data key is bound to."""
        return self.blob_id

    def encode(self) -> bytes:
        body = json.dumps(
            {
                "key_id": self.key_id,
                "wrapped": base64.b64encode(self.wrapped).decode(),
                "blob_id": self.blob_id.hex(),
            },
            separators=(",", ":"),
        ).encode()
        raw = _MAGIC + _U32.pack(len(body)) + body
        if len(raw) > HEADER_SIZE:
            raise ValueError("a wrapped data key this large does not fit the header")
        return raw.ljust(HEADER_SIZE, b"\x00")


def is_encrypted(head: bytes) -> bool:
    return head.startswith(_MAGIC)


def decode_header(raw: bytes) -> Header:
    if len(raw) < HEADER_SIZE or not raw.startswith(_MAGIC):
        raise FormatError("no encryption header", 0)
    (n,) = _U32.unpack_from(raw, len(_MAGIC))
    start = len(_MAGIC) + 4
    try:
        if start + n > HEADER_SIZE or raw[start + n : HEADER_SIZE].strip(b"\x00"):
            raise ValueError
        doc = json.loads(raw[start : start + n])
        blob_id = bytes.fromhex(doc["blob_id"])
        header = Header(str(doc["key_id"]), base64.b64decode(doc["wrapped"]), blob_id)
    except (ValueError, KeyError, TypeError):
        raise FormatError("damaged encryption header", 0) from None
    if len(blob_id) != BLOB_ID_SIZE:
        raise FormatError("damaged encryption header", 0)
    return header


def new_blob_id() -> bytes:
    return os.urandom(BLOB_ID_SIZE)


def _aad(blob_id: bytes, index: int, offset: int, length: int, final: bool) -> bytes:
    return blob_id + _AAD.pack(_AAD_LABEL, index, offset, length, final)


def seal_parts(
    aead: AESGCM, blob_id: bytes, index: int, offset: int, data: bytes | memoryview, final: bool
) -> tuple[bytes, bytes]:
    """One record in two parts (length and nonce; sealed data), to be written back to back."""
    nonce = os.urandom(NONCE_SIZE)
    n = len(data)
    return _U32.pack(n) + nonce, aead.encrypt(nonce, data, _aad(blob_id, index, offset, n, final))


def seal(
    aead: AESGCM, blob_id: bytes, index: int, offset: int, data: bytes | memoryview, final: bool
) -> bytes:
    """One record: `data` (the plaintext at `offset`) as record number `index`."""
    head, body = seal_parts(aead, blob_id, index, offset, data, final)
    return head + body


def open_record(
    aead: AESGCM, blob_id: bytes, index: int, offset: int, record: bytes | memoryview, final: bool
) -> bytes:
    """The plaintext of one whole record, or FormatError."""
    from cryptography.exceptions import InvalidTag  # loaded already, with `aead`'s class

    if len(record) < RECORD_OVERHEAD:
        raise FormatError("truncated record", offset)
    (n,) = _U32.unpack_from(record, 0)
    if len(record) != n + RECORD_OVERHEAD:
        raise FormatError("damaged record", offset)
    view = memoryview(record)
    try:
        return aead.decrypt(
            view[4 : 4 + NONCE_SIZE], view[4 + NONCE_SIZE :], _aad(blob_id, index, offset, n, final)
        )
    except InvalidTag:
        raise FormatError("damaged record", offset) from None


def record_length(prefix: bytes | bytearray | memoryview) -> int:
    """A record's stored size from its first 4 bytes."""
    (n,) = _U32.unpack_from(prefix, 0)
    return int(n) + RECORD_OVERHEAD


@dataclass(frozen=True)
class Index:
    """Where every content record lies: the decrypted trailer."""

    size: int
    lengths: tuple[int, ...]

    @property
    def plain_starts(self) -> list[int]:
        return [0, *accumulate(self.lengths)]

    @property
    def stored_starts(self) -> list[int]:
        return list(accumulate((n + RECORD_OVERHEAD for n in self.lengths), initial=HEADER_SIZE))


def seal_trailer(aead: AESGCM, blob_id: bytes, digest_raw: bytes, lengths: Sequence[int]) -> bytes:
    """Trailer record and footer: what `publish` appends after the last content record."""
    size = sum(lengths)
    body = _TRAILER_HEAD.pack(digest_raw, size, len(lengths)) + b"".join(
        _U32.pack(n) for n in lengths
    )
    record = seal(aead, blob_id, len(lengths), size, body, True)
    return record + _FOOTER.pack(len(lengths), len(record), _FOOTER_MAGIC)


@dataclass(frozen=True)
class Footer:
    count: int
    trailer_size: int

    def plaintext_size(self, stored_size: int) -> int:
        """What the footer claims (unauthenticated: for `stat`, never for reads)."""
        return (
            stored_size
            - HEADER_SIZE
            - FOOTER_SIZE
            - self.trailer_size
            - self.count * RECORD_OVERHEAD
        )


def decode_footer(raw: bytes, stored_size: int) -> Footer:
    if len(raw) != FOOTER_SIZE or stored_size < HEADER_SIZE + FOOTER_SIZE:
        raise FormatError("truncated blob", 0)
    count, trailer_size, magic = _FOOTER.unpack(raw)
    footer = Footer(count, trailer_size)
    if magic != _FOOTER_MAGIC or footer.plaintext_size(stored_size) < 0:
        raise FormatError("truncated blob", 0)
    return footer


def open_trailer(
    aead: AESGCM, blob_id: bytes, footer: Footer, record: bytes, stored_size: int
) -> tuple[bytes, Index]:
    """(sha256 of the plaintext, index) from the trailer record, checked against the size."""
    claimed = footer.plaintext_size(stored_size)
    body = open_record(aead, blob_id, footer.count, claimed, record, True)
    if len(body) < _TRAILER_HEAD.size:
        raise FormatError("damaged trailer", claimed)
    digest_raw, size, count = _TRAILER_HEAD.unpack_from(body, 0)
    if count != footer.count or len(body) != _TRAILER_HEAD.size + 4 * count:
        raise FormatError("damaged trailer", claimed)
    lengths = tuple(_U32.unpack_from(body, _TRAILER_HEAD.size + 4 * i)[0] for i in range(count))
    if sum(lengths) != size or size != claimed:
        raise FormatError("damaged trailer", claimed)
    return digest_raw, Index(size, lengths)
