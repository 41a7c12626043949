"""Blob store on a local directory: the embedded default.

Layout under the root directory:

    uploads/<upload id>          staged bytes of one upload, appended in order
    blobs/sha256/<ab>/<hex>      published blobs, read-only, named by digest

Writes are buffered in memory and handed to a worker thread in blocks of
`buffer_size` bytes (16 MiB by default), so a multi-GB upload costs a few
hundred thread hops, not one per chunk; while one block is hashed and written
(in parallel, on two threads) the next one fills. After each block the kernel
is asked to start writing it back, so the `fdatasync` in `flush()` waits only
for the tail. `commit()` renames the staged file into place, which is atomic,
and syncs the directory so the name survives a crash.

A resumed upload trusts the staged file's length. Its bytes were checked
before they were written; if a crash ever tore the file, the final sha256
check at commit fails and nothing is published.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import time
from collections.abc import AsyncGenerator
from pathlib import Path

from ..domain.errors import (
    blob_not_found,
    blob_store_unavailable,
    upload_exists,
    upload_not_found,
)
from .base import (
    DEFAULT_READ_CHUNK,
    BlobInfo,
    UploadInfo,
    check_digest,
    check_range,
    check_upload_id,
    clamp_range,
    hex_of,
    upload_busy,
)
from .local_io import fsync_dir, lock_or_busy, storage_errors
from .local_upload import LocalUpload

DEFAULT_BUFFER_SIZE = 8 * 1024 * 1024
_REHASH_BLOCK = 8 * 1024 * 1024


class LocalBlobStore:
    """`BlobStore` on a directory; see the module docstring for the layout."""

    def __init__(self, root: Path, *, buffer_size: int = DEFAULT_BUFFER_SIZE) -> None:
        self.root = root
        self._uploads = root / "uploads"
        self._blobs = root / "blobs" / "sha256"
        self.buffer_size = buffer_size
        self._open: set[str] = set()
        self._uploads.mkdir(parents=True, exist_ok=True)
        self._blobs.mkdir(parents=True, exist_ok=True)

    def blob_path(self, digest: str) -> Path:
        hex_digest = hex_of(digest)
        return self._blobs / hex_digest[:2] / hex_digest

    def _claim(self, upload_id: str) -> None:
        check_upload_id(upload_id)
        if upload_id in self._open:
            raise upload_busy(upload_id)
        self._open.add(upload_id)

    def release(self, upload_id: str) -> None:
        self._open.discard(upload_id)

    async def begin_upload(self, upload_id: str) -> LocalUpload:
        self._claim(upload_id)
        path = self._uploads / upload_id

        def create() -> int:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                raise upload_exists(upload_id) from None
            lock_or_busy(fd, upload_id)
            fsync_dir(self._uploads)
            return fd

        try:
            with storage_errors():
                fd = await asyncio.to_thread(create)
        except BaseException:
            self.release(upload_id)
            raise
        return LocalUpload(self, upload_id, path, fd, 0, hashlib.sha256())

    async def resume_upload(self, upload_id: str) -> LocalUpload:
        self._claim(upload_id)
        path = self._uploads / upload_id

        def reopen() -> tuple[int, int, hashlib._Hash]:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError:
                raise upload_not_found(upload_id) from None
            lock_or_busy(fd, upload_id)
            try:
                # Whatever is in the file now becomes durable, so it may be acknowledged.
                os.fdatasync(fd)
                hasher = hashlib.sha256()
                size = 0
                while block := os.pread(fd, _REHASH_BLOCK, size):
                    hasher.update(block)
                    size += len(block)
            except BaseException:
                os.close(fd)
                raise
            return fd, size, hasher

        try:
            with storage_errors():
                fd, size, hasher = await asyncio.to_thread(reopen)
        except BaseException:
            self.release(upload_id)
            raise
        return LocalUpload(self, upload_id, path, fd, size, hasher)

    async def list_uploads(self) -> list[UploadInfo]:
        def scan() -> list[UploadInfo]:
            found = []
            with os.scandir(self._uploads) as entries:
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
        cutoff = time.time() - older_than
        stale = [
            u
            for u in await self.list_uploads()
            if u.updated_at <= cutoff and u.upload_id not in self._open
        ]

        def remove() -> list[UploadInfo]:
            removed = []
            for upload in stale:
                path = self._uploads / upload.upload_id
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
                fsync_dir(self._uploads)
            return removed

        with storage_errors():
            return await asyncio.to_thread(remove)

    async def stat(self, digest: str) -> BlobInfo | None:
        path = self.blob_path(check_digest(digest))
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
        path = self.blob_path(check_digest(digest))
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
                yield data
        finally:
            if pending is not None:
                await asyncio.gather(pending, return_exceptions=True)
            os.close(fd)

    async def delete(self, digest: str) -> bool:
        path = self.blob_path(check_digest(digest))

        def remove() -> bool:
            try:
                path.unlink()
            except FileNotFoundError:
                return False
            fsync_dir(path.parent)
            return True

        with storage_errors():
            return await asyncio.to_thread(remove)

    async def close(self) -> None:
        """Nothing to release: file handles belong to uploads and readers."""

    def publish(self, fd: int, staged: Path, digest: str) -> BlobInfo:
        """Move verified bytes under their digest (runs on a worker thread)."""
        final = self.blob_path(digest)
        size = os.fstat(fd).st_size
        if final.exists():
            staged.unlink()
        else:
            if not final.parent.exists():
                final.parent.mkdir(exist_ok=True)
                fsync_dir(self._blobs)
            os.fchmod(fd, 0o444)
            # Atomic: readers see no blob or the whole blob. A concurrent commit of
            # the same content replaces it with identical bytes.
            os.rename(staged, final)
            fsync_dir(final.parent)
        fsync_dir(self._uploads)
        return BlobInfo(digest, size)
