"""One upload staged in one local file; see `local_blobs` for the layout."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..domain.errors import digest_mismatch, size_mismatch, upload_finished
from .base import DIGEST_PREFIX, BlobInfo, check_digest
from .local_io import fsync_dir, pwrite_all, storage_errors, translate

if TYPE_CHECKING:
    from .local_blobs import LocalBlobStore


class LocalUpload:
    """An upload staged in one file; see `Upload` for the contract."""

    def __init__(
        self,
        store: LocalBlobStore,
        upload_id: str,
        path: Path,
        fd: int,
        offset: int,
        hasher: hashlib._Hash,
    ) -> None:
        self._store = store
        self._id = upload_id
        self._path = path
        self._fd: int | None = fd
        self._hasher = hasher
        self._durable = offset
        self._written = offset
        self._file_end = offset
        # Chunks as received, written with one pwritev: no copy into a
        # growing buffer on the event loop's thread.
        self._chunks: list[bytes] = []
        self._buffered = 0
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

    def _live_fd(self) -> int:
        if self._finished or self._fd is None:
            raise upload_finished(self._id)
        if self._failed is not None:
            raise self._failed
        return self._fd

    async def write(self, data: bytes) -> None:
        self._live_fd()
        self._chunks.append(bytes(data))
        self._buffered += len(data)
        self._written += len(data)
        if self._buffered >= self._store.buffer_size:
            await self._spill(sync=False)

    async def _settle(self) -> None:
        """Wait for the block in flight; a failure leaves the upload unusable but closable.

        The wait is shielded: if the caller is cancelled, the threads run to the end
        and `close()` waits for them before it closes the file.
        """
        if not self._pending:
            return
        results = await asyncio.shield(asyncio.gather(*self._pending, return_exceptions=True))
        self._pending = []
        for result in results:
            if isinstance(result, BaseException):
                self._failed = translate(result)
                if self._failed is result:
                    raise result
                raise self._failed from result

    async def _spill(self, *, sync: bool) -> None:
        """Hash and write the buffer on two threads; wait only for the block before it."""
        fd = self._live_fd()
        await self._settle()
        block, self._chunks = self._chunks, []
        size, self._buffered = self._buffered, 0
        start = self._file_end
        self._file_end += size
        hasher = self._hasher

        def hash_block() -> None:
            for chunk in block:
                hasher.update(chunk)

        def write_block() -> None:
            pwrite_all(fd, block, start, size)
            if sync:
                os.fdatasync(fd)

        self._pending = [
            asyncio.ensure_future(asyncio.to_thread(hash_block)),
            asyncio.ensure_future(asyncio.to_thread(write_block)),
        ]
        if sync:
            await self._settle()

    async def flush(self) -> int:
        await self._spill(sync=True)
        self._durable = self._file_end
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
        fd = self._live_fd()
        with storage_errors():
            info = await asyncio.to_thread(self._store.publish, fd, self._path, digest)
        self._finish()
        return info

    async def cancel(self) -> None:
        if self._finished:
            return
        await self._quiesce()

        def remove() -> None:
            try:
                self._path.unlink()
            except FileNotFoundError:
                return
            fsync_dir(self._path.parent)

        try:
            with storage_errors():
                await asyncio.to_thread(remove)
        finally:
            self._finish()

    async def close(self) -> None:
        if not self._finished:
            await self._quiesce()
            self._finish()

    async def _quiesce(self) -> None:
        """Wait for the thread still writing, whatever became of it."""
        pending, self._pending = self._pending, []
        await asyncio.gather(*pending, return_exceptions=True)

    def _finish(self) -> None:
        self._finished = True
        self._chunks = []
        self._buffered = 0
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._store.release(self._id)
