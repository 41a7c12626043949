"""`EncryptedBlobStore`: any `BlobStore` with envelope encryption at rest.

Writes are encrypted below `StagedUpload`, in the backend's staging (see
`encrypting_staging`; the backend is built with `staging_layer` so that no
plaintext reaches its disk or bucket, staging included). Reads come through
here: a ranged read maps the plaintext range to the records that hold it,
fetches only those from the backend, authenticates and decrypts them, and
serves the requested slice. Nothing unauthenticated is ever yielded: damage
is `BLOB_DAMAGED` (DATA_LOSS) naming the blob and the plaintext offset; a
data key the keyring cannot unwrap is `ENCRYPTION_KEY_MISSING` or
`ENCRYPTION_KEY_MISMATCH` (FAILED_PRECONDITION), raised before the first byte.

`stat` reads only the footer (no key needed: dedup and manifest checks work
without one); opening a blob for reading costs a read of its header and of
its tail, after which the unwrapped index is cached per blob.

Everything else, `delete` included, is the backend's.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_right
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ...domain.errors import blob_not_found
from ..base import (
    DEFAULT_READ_CHUNK,
    MAX_READ_CHUNK,
    BlobInfo,
    BlobStore,
    StoredBlob,
    Upload,
    UploadInfo,
    check_range,
    clamp_range,
    hex_of,
)
from ..staged_upload import Staging, StagingLayer
from .encrypting_staging import EncryptingStaging, plaintext_estimate
from .errors import damaged, key_error
from .keyring import KeyMismatch, KeyMissing, KeyWrapper
from .segments import (
    FOOTER_SIZE,
    HEADER_SIZE,
    RECORD_OVERHEAD,
    SEGMENT_SIZE,
    FormatError,
    Index,
    decode_footer,
    decode_header,
    open_record,
    open_trailer,
)

if TYPE_CHECKING:
    from .stored_form import StoredForm

# Bytes read from a blob's end to find its footer and (usually) its trailer:
# enough for the index of a 16 GiB blob.
_TAIL_READ = 64 * 1024
_CACHED_BLOBS = 512


def encrypting_layer(keys: KeyWrapper, segment_size: int = SEGMENT_SIZE) -> StagingLayer:
    """The `staging_layer` for a backend under an `EncryptedBlobStore` with `keys`."""

    def wrap(upload_id: str, staging: Staging) -> Staging:
        return EncryptingStaging(upload_id, staging, keys, segment_size)

    return wrap


@dataclass(frozen=True)
class _Opened:
    aead: AESGCM
    blob_id: bytes
    index: Index
    plain_starts: list[int]
    stored_starts: list[int]


class EncryptedBlobStore:
    """`BlobStore` over `inner`, which must be built with `encrypting_layer(keys)`."""

    def __init__(self, inner: BlobStore, keys: KeyWrapper) -> None:
        self.inner = inner
        self.keys = keys
        self._opened: OrderedDict[tuple[str, bytes, bytes, int], _Opened] = OrderedDict()
        self._form: StoredForm | None = None

    async def begin_upload(self, upload_id: str, size_hint: int = 0) -> Upload:
        return await self.inner.begin_upload(upload_id, size_hint)

    async def resume_upload(self, upload_id: str) -> Upload:
        return await self.inner.resume_upload(upload_id)

    async def list_uploads(self) -> list[UploadInfo]:
        uploads = await self.inner.list_uploads()
        return self._plain_infos(uploads, await self._staged_plaintext() if uploads else {})

    async def reclaim_uploads(self, older_than: float) -> list[UploadInfo]:
        plain = await self._staged_plaintext()  # before the staging goes
        return self._plain_infos(await self.inner.reclaim_uploads(older_than), plain)

    async def _staged_plaintext(self) -> dict[str, int]:
        if self._form is None:
            from .stored_form import stored_form

            self._form = await stored_form(self.inner)
        return await self._form.staged_plaintext()

    @staticmethod
    def _plain_infos(uploads: list[UploadInfo], plain: dict[str, int]) -> list[UploadInfo]:
        """Offsets in plaintext bytes (staging offsets count headers and tags)."""
        return [
            replace(u, offset=plain.get(u.upload_id, plaintext_estimate(u.offset))) for u in uploads
        ]

    async def delete(self, digest: str) -> bool:
        self.forget(digest)
        return await self.inner.delete(digest)

    def list_blobs(self) -> AsyncIterator[StoredBlob]:
        """As stored: sizes are of the encrypted form, which is what a sweep frees."""
        return self.inner.list_blobs()

    async def close(self) -> None:
        await self.inner.close()

    def forget(self, digest: str) -> None:
        """Drop what is cached about `digest` (its stored form changed)."""
        for key in [k for k in self._opened if k[0] == digest]:
            del self._opened[key]

    async def read_stored(self, digest: str, offset: int, length: int) -> bytes:
        """Stored (encrypted) bytes of a blob, as the backend has them."""
        return await self._read(digest, offset, length)

    async def _read(self, digest: str, offset: int, length: int) -> bytes:
        parts = []
        async with aclosing(
            self.inner.open_reader(digest, offset, length, min(MAX_READ_CHUNK, max(length, 1)))
        ) as chunks:
            async for chunk in chunks:
                parts.append(chunk)
        return b"".join(parts)

    async def stat(self, digest: str) -> BlobInfo | None:
        stored = await self.inner.stat(digest)
        if stored is None:
            return None
        try:
            if stored.size < HEADER_SIZE + FOOTER_SIZE:
                raise FormatError("truncated blob", 0)
            raw = await self._read(digest, stored.size - FOOTER_SIZE, FOOTER_SIZE)
            footer = decode_footer(raw, stored.size)
        except FormatError as exc:
            raise damaged(exc, digest) from None
        return BlobInfo(digest, footer.plaintext_size(stored.size))

    async def _open(self, digest: str) -> _Opened:
        """The blob's data key and index, authenticated; errors before any content."""
        stored = await self.inner.stat(digest)
        if stored is None:
            raise blob_not_found(digest)
        size = stored.size
        try:
            if size < HEADER_SIZE + FOOTER_SIZE:
                raise FormatError("truncated blob", 0)
            head = await self._read(digest, 0, HEADER_SIZE)
            tail_len = min(size - HEADER_SIZE, _TAIL_READ)
            tail = await self._read(digest, size - tail_len, tail_len)
            footer_raw = tail[-FOOTER_SIZE:]
            key = (digest, head, footer_raw, size)
            cached = self._opened.get(key)
            if cached is not None:
                self._opened.move_to_end(key)
                return cached
            header = decode_header(head)
            footer = decode_footer(footer_raw, size)
            trailer_end = size - FOOTER_SIZE
            trailer_start = trailer_end - footer.trailer_size
            if trailer_start < HEADER_SIZE:
                raise FormatError("truncated blob", 0)
            if trailer_start >= size - tail_len:
                trailer = tail[trailer_start - (size - tail_len) : -FOOTER_SIZE]
            else:
                trailer = await self._read(digest, trailer_start, footer.trailer_size)
            try:
                data_key = await asyncio.to_thread(
                    self.keys.unwrap, header.key_id, header.wrapped, header.context
                )
            except (KeyMissing, KeyMismatch) as exc:
                raise key_error(exc, digest) from None
            aead = AESGCM(data_key)
            digest_raw, index = open_trailer(aead, header.blob_id, footer, trailer, size)
            if digest_raw.hex() != hex_of(digest):
                raise FormatError("the stored blob is another blob's", 0)
        except FormatError as exc:
            raise damaged(exc, digest) from None
        opened = _Opened(aead, header.blob_id, index, index.plain_starts, index.stored_starts)
        self._opened[key] = opened
        while len(self._opened) > _CACHED_BLOBS:
            self._opened.popitem(last=False)
        return opened

    async def open_reader(
        self,
        digest: str,
        offset: int = 0,
        length: int | None = None,
        chunk_size: int = DEFAULT_READ_CHUNK,
    ) -> AsyncGenerator[bytes, None]:
        check_range(offset, length, chunk_size)
        opened = await self._open(digest)
        n = clamp_range(offset, length, opened.index.size)
        if n == 0:
            return
        end = offset + n
        starts, stored = opened.plain_starts, opened.stored_starts
        lengths = opened.index.lengths
        first = bisect_right(starts, offset) - 1
        last = bisect_right(starts, end - 1) - 1
        longest = max(lengths[first : last + 1]) + RECORD_OVERHEAD
        source = self.inner.open_reader(
            digest, stored[first], stored[last + 1] - stored[first], min(MAX_READ_CHUNK, longest)
        )
        # Each record is decrypted on a worker thread while the one before it
        # is handed to the caller: at most two records' plaintext in memory.
        pending: deque[tuple[int, asyncio.Future[bytes]]] = deque()
        k = first
        buf = bytearray()
        try:
            async with aclosing(source) as blocks:
                async for block in blocks:
                    if buf:
                        buf += block
                        data: bytes | bytearray = buf
                    else:
                        data = block
                    pos = 0
                    while k <= last and len(data) - pos >= lengths[k] + RECORD_OVERHEAD:
                        size = lengths[k] + RECORD_OVERHEAD
                        # Views into an immutable block; copies out of the buffer,
                        # which grows while they are decrypted.
                        record = (
                            memoryview(data)[pos : pos + size]
                            if isinstance(data, bytes)
                            else bytes(data[pos : pos + size])
                        )
                        pos += size
                        pending.append((k, self._decrypt(digest, opened, k, record)))
                        k += 1
                    del data
                    buf = bytearray(buf[pos:] if buf else memoryview(block)[pos:])
                    del block
                    while len(pending) > 1:
                        for piece in await self._slices(pending, starts, offset, end, chunk_size):
                            yield piece
            while pending:
                for piece in await self._slices(pending, starts, offset, end, chunk_size):
                    yield piece
        finally:
            await asyncio.gather(*(f for _, f in pending), return_exceptions=True)
        if k <= last:
            raise damaged(FormatError("truncated record", starts[k]), digest)

    @staticmethod
    async def _slices(
        pending: deque[tuple[int, asyncio.Future[bytes]]],
        starts: list[int],
        offset: int,
        end: int,
        chunk_size: int,
    ) -> list[bytes]:
        """The oldest decrypted record, cut to the requested range and chunk size."""
        k, future = pending[0]
        plain = await future
        pending.popleft()
        lo = max(offset, starts[k]) - starts[k]
        hi = min(end, starts[k + 1]) - starts[k]
        if lo == 0 and hi == len(plain) and hi <= chunk_size:
            return [plain]
        view = memoryview(plain)
        return [bytes(view[at : min(hi, at + chunk_size)]) for at in range(lo, hi, chunk_size)]

    def _decrypt(
        self, digest: str, opened: _Opened, k: int, record: bytes | memoryview
    ) -> asyncio.Future[bytes]:
        start = opened.plain_starts[k]

        def run() -> bytes:
            try:
                return open_record(opened.aead, opened.blob_id, k, start, record, False)
            except FormatError as exc:
                raise damaged(exc, digest) from None

        return asyncio.ensure_future(asyncio.to_thread(run))
