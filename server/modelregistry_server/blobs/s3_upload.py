"""One upload staged as S3 segment objects; see `s3_layout` for the rules.

While one segment is hashed and PUT, the next one fills in memory, so an
upload holds at most two segments (32 MiB by default) whatever its size.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import TYPE_CHECKING

from ..domain.errors import digest_mismatch, size_mismatch, upload_finished
from .base import DIGEST_PREFIX, BlobInfo, check_digest
from .s3_layout import Segment

if TYPE_CHECKING:
    from .s3_blobs import S3BlobStore


class S3Upload:
    """See `Upload` for the contract."""

    def __init__(
        self,
        store: S3BlobStore,
        upload_id: str,
        segments: list[Segment],
        hasher: hashlib._Hash,
    ) -> None:
        self._store = store
        self._id = upload_id
        self._segments = list(segments)
        self._hasher = hasher
        end = segments[-1].end if segments else 0
        self._durable = end
        self._sealed = end
        self._written = end
        self._buf = bytearray()
        self._in_flight = Segment(end, 0)
        self._pending: list[asyncio.Future[None]] = []
        self._failed: BaseException | None = None
        self._finished = False

    @property
    def upload_id(self) -> str:
        return self._id

    @property
    def offset(self) -> int:
        return self._durable

    @property
    def written(self) -> int:
        return self._written

    def _check_live(self) -> None:
        if self._finished:
            raise upload_finished(self._id)
        if self._failed is not None:
            raise self._failed

    async def write(self, data: bytes) -> None:
        self._check_live()
        self._buf += data
        self._written += len(data)
        if len(self._buf) >= self._store.segment_size:
            await self._seal()

    async def _settle(self) -> None:
        """Wait for the segment in flight (shielded, so a cancelled caller never
        leaves a PUT racing a later one)."""
        if not self._pending:
            return
        results = await asyncio.shield(asyncio.gather(*self._pending, return_exceptions=True))
        self._pending = []
        for result in results:
            if isinstance(result, BaseException):
                # The hash may have moved past the staged bytes: only a resume
                # (which reads them back) can continue from here.
                self._failed = result
                raise result
        self._segments.append(self._in_flight)
        self._durable = self._in_flight.end

    async def _seal(self) -> None:
        await self._settle()
        if not self._buf:
            return
        block, self._buf = self._buf, bytearray()
        self._in_flight = Segment(self._sealed, len(block))
        self._sealed += len(block)
        self._pending = [
            asyncio.ensure_future(asyncio.to_thread(self._hasher.update, block)),
            asyncio.ensure_future(self._store.put_segment(self._id, self._in_flight.start, block)),
        ]

    async def flush(self) -> int:
        self._check_live()
        await self._seal()
        await self._settle()
        return self._durable

    async def commit(
        self, expected_digest: str | None = None, expected_size: int | None = None
    ) -> BlobInfo:
        if expected_digest is not None:
            check_digest(expected_digest, "expected_digest")
        size = await self.flush()
        digest = DIGEST_PREFIX + self._hasher.hexdigest()
        if expected_size is not None and expected_size != size:
            await self.cancel()
            raise size_mismatch(expected_size, size)
        if expected_digest is not None and expected_digest != digest:
            await self.cancel()
            raise digest_mismatch(expected_digest, digest)
        info = await self._store.publish(self._id, self._segments, digest)
        self._finish()
        return info

    async def cancel(self) -> None:
        if self._finished:
            return
        await self._quiesce()
        try:
            await self._store.delete_staging(self._id)
        finally:
            self._finish()

    async def close(self) -> None:
        if not self._finished:
            await self._quiesce()
            self._finish()

    async def _quiesce(self) -> None:
        pending, self._pending = self._pending, []
        await asyncio.gather(*pending, return_exceptions=True)

    def _finish(self) -> None:
        self._finished = True
        self._buf = bytearray()
        self._store.release(self._id)
