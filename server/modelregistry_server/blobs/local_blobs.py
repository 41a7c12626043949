"""Blob store on a local directory: the embedded default.

Layout under the root directory:

    uploads/<upload id>          staged bytes of one upload, appended in order
    blobs/sha256/<ab>/<hex>      published blobs, read-only, named by digest

Uploads are `StagedUpload`s over one `LocalStaging` file each, handed over in
blocks of `buffer_size` bytes (see `local_staging` for how they reach the
disk and become blobs).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from pathlib import Path

from ..domain.errors import (
    blob_not_found,
    blob_store_unavailable,
    upload_exists,
    upload_not_found,
)
from ..private_files import private_dir
from .base import (
    DEFAULT_READ_CHUNK,
    DIGEST_PREFIX,
    BlobInfo,
    OpenUploads,
    StoredBlob,
    UploadInfo,
    check_digest,
    check_range,
    clamp_range,
)
from .local_io import LocalLayout, fsync_dir, lock_or_busy, storage_errors
from .local_staging import LocalStaging
from .staged_upload import StagedUpload, Staging, StagingLayer
from .thread_jobs import wait_out

# An upload holds about two blocks (one filling while one is written): 4 MiB
# keeps a push's memory lower than 8 did (125 against 130-140 MB peak RSS)
# at the same speed.
DEFAULT_BUFFER_SIZE = 4 * 1024 * 1024


class LocalBlobStore:
    """`BlobStore` on a directory; see the module docstring for the layout."""

    def __init__(
        self,
        root: Path,
        *,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        staging_layer: StagingLayer | None = None,
    ) -> None:
        self.root = root
        # Wraps each upload's staging (encryption at rest); None: stage as is.
        self.staging_layer = staging_layer
        self._layout = LocalLayout(root)
        self.buffer_size = buffer_size
        self._open = OpenUploads()
        for directory in (root, self._layout.uploads, self._layout.blobs):
            private_dir(directory)

    async def begin_upload(self, upload_id: str, size_hint: int = 0) -> StagedUpload:
        uploads = self._layout.uploads

        def create(path: Path) -> int:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                raise upload_exists(upload_id) from None
            lock_or_busy(fd, upload_id)
            fsync_dir(uploads)
            return fd

        return StagedUpload(upload_id, await self._staging(upload_id, create))

    async def resume_upload(self, upload_id: str) -> StagedUpload:
        def reopen(path: Path) -> int:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                raise upload_not_found(upload_id) from None
            lock_or_busy(fd, upload_id)
            try:
                # Whatever is in the file now becomes durable, so it may be acknowledged.
                os.fdatasync(fd)
            except BaseException:
                os.close(fd)
                raise
            return fd

        return await StagedUpload.resume(upload_id, await self._staging(upload_id, reopen))

    async def _staging(self, upload_id: str, open_file: Callable[[Path], int]) -> Staging:
        """Claim the id, then open (and lock) its file on a worker thread.
        Cancelled meanwhile, the thread still opens and locks the file: it
        is waited for and the file closed, or the lock would keep the upload
        busy until a restart."""
        self._open.claim(upload_id)
        opening = asyncio.ensure_future(
            asyncio.to_thread(open_file, self._layout.upload(upload_id))
        )
        try:
            with storage_errors():
                fd = await asyncio.shield(opening)
        except BaseException:
            try:
                await wait_out((opening,))
            finally:
                if not opening.cancelled() and opening.exception() is None:
                    os.close(opening.result())
                self._open.release(upload_id)
            raise
        staging = LocalStaging(self._layout, upload_id, fd, self.buffer_size, self._open)
        return staging if self.staging_layer is None else self.staging_layer(upload_id, staging)

    async def list_uploads(self) -> list[UploadInfo]:
        def scan() -> list[UploadInfo]:
            found = []
            with os.scandir(self._layout.uploads) as entries:
                for entry in entries:
                    try:
                        st = entry.stat()
                    except FileNotFoundError:
                        continue
                    found.append(UploadInfo(entry.name, st.st_size, st.st_mtime))
            return sorted(found, key=lambda u: u.upload_id)

        with storage_errors():
            return await asyncio.to_thread(scan)

    async def reclaim_uploads(self, older_than: float) -> list[UploadInfo]:
        stale = self._open.reclaimable(await self.list_uploads(), older_than)

        def remove() -> list[UploadInfo]:
            removed = []
            for upload in stale:
                path = self._layout.upload(upload.upload_id)
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue
                try:
                    # Another server process on this directory may be writing it.
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                else:
                    path.unlink()
                    removed.append(upload)
                finally:
                    os.close(fd)
            if removed:
                fsync_dir(self._layout.uploads)
            return removed

        with storage_errors():
            return await asyncio.to_thread(remove)

    async def stat(self, digest: str) -> BlobInfo | None:
        path = self._layout.blob(check_digest(digest))
        try:
            with storage_errors():
                st = await asyncio.to_thread(os.stat, path)
        except FileNotFoundError:
            return None
        return BlobInfo(digest, st.st_size)

    async def open_reader(
        self,
        digest: str,
        offset: int = 0,
        length: int | None = None,
        chunk_size: int = DEFAULT_READ_CHUNK,
    ) -> AsyncGenerator[bytes, None]:
        path = self._layout.blob(check_digest(digest))
        check_range(offset, length, chunk_size)

        def open_ro() -> tuple[int, int]:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                raise blob_not_found(digest) from None
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
            return fd, os.fstat(fd).st_size

        with storage_errors():
            fd, size = await asyncio.to_thread(open_ro)
        pending: asyncio.Future[bytes] | None = None
        try:
            pos = offset
            end = offset + clamp_range(offset, length, size)
            if pos < end:
                pending = asyncio.ensure_future(
                    asyncio.to_thread(os.pread, fd, min(chunk_size, end - pos), pos)
                )
            while pending is not None:
                with storage_errors():
                    # Shielded: a cancelled caller must not close the file under the thread.
                    data = await asyncio.shield(pending)
                pending = None
                if not data:
                    raise blob_store_unavailable("a blob file is shorter than recorded")
                pos += len(data)
                if pos < end:
                    # Read the next chunk while the caller sends this one.
                    pending = asyncio.ensure_future(
                        asyncio.to_thread(os.pread, fd, min(chunk_size, end - pos), pos)
                    )
                # Handed over, not kept: while a slow client holds this chunk
                # the reader pins only the one it read ahead.
                out = [data]
                del data
                yield out.pop()
        finally:
            try:
                if pending is not None:
                    await wait_out((pending,))
            finally:
                os.close(fd)

    async def delete(self, digest: str) -> bool:
        path = self._layout.blob(check_digest(digest))

        def remove() -> bool:
            try:
                path.unlink()
            except FileNotFoundError:
                return False
            fsync_dir(path.parent)
            return True

        with storage_errors():
            return await asyncio.to_thread(remove)

    async def list_blobs(self) -> AsyncIterator[StoredBlob]:
        def scan(fan_out: str) -> list[StoredBlob]:
            found: list[StoredBlob] = []
            try:
                entries = os.scandir(self._layout.blobs / fan_out)
            except FileNotFoundError:
                return found
            with entries:
                for entry in entries:
                    try:
                        st = entry.stat()
                    except FileNotFoundError:
                        continue
                    found.append(StoredBlob(DIGEST_PREFIX + entry.name, st.st_size, st.st_mtime))
            return found

        with storage_errors():
            fan_outs = sorted(await asyncio.to_thread(os.listdir, self._layout.blobs))
        for fan_out in fan_outs:
            with storage_errors():
                batch = await asyncio.to_thread(scan, fan_out)
            for blob in batch:
                yield blob

    async def close(self) -> None:
        """Nothing to release: file handles belong to uploads and readers."""
