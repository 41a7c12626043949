"""A `Staging` that encrypts: what reaches a backend's staging is header and sealed records.

`StagedUpload` above it sees plaintext (it hashes what it is given, so digests
stay those of the plaintext); the backend below sees only the stored format of
`segments`, appended in order, so its own staging, resume and publish work
unchanged on ciphertext.

Content is cut into `SEGMENT_SIZE` records. A block that does not end on a
segment boundary keeps its tail in memory (that append reports "not durable",
so nothing past the last whole record is acknowledged), unless the append is a
synced one (a flush): then the tail is sealed as a short record, because an
acknowledged byte must survive. A stream that drops mid-segment therefore
leaves every acknowledged byte in whole records; on resume `read_back`
authenticates and decrypts the records (so the sha256 is rebuilt from
plaintext), recovers the record lengths for the index and continues with the
next record number. Records are never rewritten, and each has a random nonce.

`publish` appends the trailer (digest and index) and footer, then lets the
backend publish; if the digest already exists the backend drops the staging.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ...domain.errors import DataLoss
from ..base import Chunk, hex_of
from ..staged_upload import Staging
from .errors import damaged, key_error
from .keyring import KeyMismatch, KeyMissing, KeyWrapper
from .segments import (
    HEADER_SIZE,
    RECORD_OVERHEAD,
    SEGMENT_SIZE,
    FormatError,
    Header,
    decode_header,
    new_blob_id,
    open_record,
    record_length,
    seal_parts,
    seal_trailer,
)


class EncryptingStaging:
    """See the module docstring; wraps the backend's `inner` staging of `upload_id`."""

    def __init__(
        self,
        upload_id: str,
        inner: Staging,
        keys: KeyWrapper,
        segment_size: int = SEGMENT_SIZE,
    ) -> None:
        self._id = upload_id
        self._inner = inner
        self._keys = keys
        self._segment_size = segment_size
        self._aead: AESGCM | None = None
        self._blob_id = b""
        # Stored bytes handed to the backend, and the plaintext they hold.
        self._stored = 0
        self._plain = 0
        self._lengths: list[int] = []
        self._tail = b""
        self._sealed = False

    @property
    def block_size(self) -> int:
        return self._inner.block_size

    def _start(self) -> bytes:
        """A new data key and blob id; the header that carries them."""
        data_key = AESGCM.generate_key(bit_length=256)
        self._blob_id = new_blob_id()
        key_id, wrapped = self._keys.wrap(data_key, self._blob_id)
        self._aead = AESGCM(data_key)
        return Header(key_id, wrapped, self._blob_id).encode()

    def _seal(self, piece: bytes | memoryview, out: list[bytes]) -> None:
        assert self._aead is not None
        out.extend(
            seal_parts(self._aead, self._blob_id, len(self._lengths), self._plain, piece, False)
        )
        self._lengths.append(len(piece))
        self._plain += len(piece)

    def _seal_chunks(self, chunks: Sequence[Chunk], final_tail: bool) -> tuple[list[bytes], bytes]:
        """Sealed records of the chunks' whole segments (and of the rest if `final_tail`),
        and the rest. A segment within one chunk is sealed in place; one spanning
        chunks is gathered first (at most a segment's copy)."""
        out: list[bytes] = []
        if self._aead is None:
            out.append(self._start())
        size = self._segment_size
        gathered: list[memoryview] = []
        have = 0
        for chunk in chunks:
            view = memoryview(chunk)
            pos = 0
            while pos < len(view):
                take = min(size - have, len(view) - pos)
                gathered.append(view[pos : pos + take])
                have += take
                pos += take
                if have == size:
                    self._seal(gathered[0] if len(gathered) == 1 else b"".join(gathered), out)
                    gathered, have = [], 0
        if final_tail and have:
            self._seal(b"".join(gathered), out)
            gathered = []
        return out, b"".join(gathered)

    async def append(self, offset: int, chunks: Sequence[Chunk], size: int, *, sync: bool) -> bool:
        parts = [self._tail, *chunks] if self._tail else list(chunks)
        del chunks
        self._tail = b""
        plain, lengths = self._plain, len(self._lengths)
        try:
            records, self._tail = await asyncio.to_thread(self._seal_chunks, parts, sync)
        except BaseException:
            self._plain, self._lengths[lengths:] = plain, []
            raise
        del parts
        stored = sum(len(r) for r in records)
        start, self._stored = self._stored, self._stored + stored
        durable = await self._inner.append(start, records, stored, sync=sync)
        return durable and not self._tail

    async def read_back(self) -> AsyncGenerator[bytes, None]:
        """Authenticated plaintext of the staged records (a resume's first call).

        Damaged staging cannot be completed: it is discarded and the resume
        fails with `BLOB_DAMAGED`, so the upload starts again and nothing is
        left behind. A missing key fails the resume and keeps the staging.
        """
        try:
            async with aclosing(self._read_back()) as pieces:
                async for piece in pieces:
                    yield piece
        except DataLoss:
            await self._inner.discard()
            raise

    async def _read_back(self) -> AsyncGenerator[bytes, None]:
        buf = bytearray()
        async with aclosing(self._inner.read_back()) as blocks:
            async for block in blocks:
                buf += block
                plain: list[bytes] = []
                if self._aead is None:
                    if len(buf) < HEADER_SIZE:
                        continue
                    await self._open_header(bytes(buf[:HEADER_SIZE]))
                    del buf[:HEADER_SIZE]
                    self._stored = HEADER_SIZE
                while len(buf) >= 4 and len(buf) >= record_length(buf):
                    n = record_length(buf)
                    plain.append(self._open(bytes(buf[:n])))
                    del buf[:n]
                    self._stored += n
                for piece in plain:
                    yield piece
        if buf:
            raise damaged(
                FormatError("staging ends inside a record", self._plain), f"upload {self._id}"
            )

    async def _open_header(self, raw: bytes) -> None:
        what = f"upload {self._id}"
        try:
            header = decode_header(raw)
            data_key = await asyncio.to_thread(
                self._keys.unwrap, header.key_id, header.wrapped, header.context
            )
        except FormatError as exc:
            raise damaged(exc, what) from None
        except (KeyMissing, KeyMismatch) as exc:
            raise key_error(exc, what) from None
        self._blob_id = header.blob_id
        self._aead = AESGCM(data_key)

    def _open(self, record: bytes) -> bytes:
        assert self._aead is not None
        try:
            piece = open_record(
                self._aead, self._blob_id, len(self._lengths), self._plain, record, False
            )
        except FormatError as exc:
            raise damaged(exc, f"upload {self._id}") from None
        self._lengths.append(len(piece))
        self._plain += len(piece)
        return piece

    async def publish(self, digest: str) -> None:
        if not self._sealed:
            if self._tail:
                raise AssertionError("publish before the last flush")
            if self._aead is None:  # an empty blob: the header is still needed
                records, _ = await asyncio.to_thread(self._seal_chunks, [], True)
            else:
                records = []
            assert self._aead is not None
            records.append(
                seal_trailer(
                    self._aead, self._blob_id, bytes.fromhex(hex_of(digest)), self._lengths
                )
            )
            stored = sum(len(r) for r in records)
            await self._inner.append(self._stored, records, stored, sync=True)
            self._stored += stored
            self._sealed = True
        await self._inner.publish(digest)

    async def discard(self) -> None:
        await self._inner.discard()

    def release(self) -> None:
        self._tail = b""
        self._inner.release()


def plaintext_estimate(stored: int, segment_size: int = SEGMENT_SIZE) -> int:
    """Plaintext bytes in a staging of `stored` bytes, if only its last record is short.

    Each extra short record (one per flush that ended mid-segment) makes the
    real figure 32 bytes larger; a resume reports the exact offset.
    """
    body = stored - HEADER_SIZE
    if body <= 0:
        return 0
    records = -(-body // (segment_size + RECORD_OVERHEAD))
    return max(0, body - records * RECORD_OVERHEAD)
