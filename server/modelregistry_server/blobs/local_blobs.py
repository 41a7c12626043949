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
import errno
import hashlib
import os
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..domain.errors import (
    Aborted,
    blob_not_found,
    blob_store_full,
    blob_store_unavailable,
    digest_mismatch,
    size_mismatch,
    upload_exists,
    upload_finished,
    upload_not_found,
)
from .base import (
    DEFAULT_READ_CHUNK,
    DIGEST_PREFIX,
    BlobInfo,
    UploadInfo,
    check_digest,
    check_range,
    check_upload_id,
    clamp_range,
    hex_of,
)

DEFAULT_BUFFER_SIZE = 16 * 1024 * 1024
_REHASH_BLOCK = 8 * 1024 * 1024
_FULL = {errno.ENOSPC, errno.EDQUOT}
_UNREACHABLE = {errno.EIO, errno.ENOTCONN, errno.ESTALE, errno.ETIMEDOUT, errno.EHOSTDOWN}


def _translate(exc: BaseException) -> BaseException:
    """The domain error a caller can act on, or `exc` itself (it then stays internal)."""
    if isinstance(exc, OSError):
        if exc.errno in _FULL:
            return blob_store_full()
        if exc.errno in _UNREACHABLE:
            return blob_store_unavailable("local storage I/O error")
    return exc


@contextmanager
def _storage_errors() -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        translated = _translate(exc)
        if translated is exc:
            raise
        raise translated from exc


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pwrite_all(fd: int, data: bytearray, start: int) -> None:
    view = memoryview(data)
    pos = start
    while view:
        n = os.pwrite(fd, view, pos)
        view = view[n:]
        pos += n
    if hasattr(os, "posix_fadvise"):
        # Starts writeback of these pages now (and drops them once clean), so the
        # disk works while the next block fills and a multi-GB upload does not
        # crowd the page cache.
        os.posix_fadvise(fd, start, len(data), os.POSIX_FADV_DONTNEED)


class LocalBlobStore:
    """`BlobStore` on a directory; see the module docstring for the layout."""

    def __init__(self, root: Path, *, buffer_size: int = DEFAULT_BUFFER_SIZE) -> None:
        self.root = root
        self._uploads = root / "uploads"
        self._blobs = root / "blobs" / "sha256"
        self._buffer_size = buffer_size
        self._open: set[str] = set()
        self._uploads.mkdir(parents=True, exist_ok=True)
        self._blobs.mkdir(parents=True, exist_ok=True)

    def blob_path(self, digest: str) -> Path:
        hex_digest = hex_of(digest)
        return self._blobs / hex_digest[:2] / hex_digest

    def _claim(self, upload_id: str) -> None:
        check_upload_id(upload_id)
        if upload_id in self._open:
            raise Aborted(
                "UPLOAD_BUSY",
                f"upload {upload_id} is in use by another stream",
                {"upload_id": upload_id},
            )
        self._open.add(upload_id)

    def _release(self, upload_id: str) -> None:
        self._open.discard(upload_id)

    async def begin_upload(self, upload_id: str) -> LocalUpload:
        self._claim(upload_id)
        path = self._uploads / upload_id

        def create() -> int:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                raise upload_exists(upload_id) from None
            _fsync_dir(self._uploads)
            return fd

        try:
            with _storage_errors():
                fd = await asyncio.to_thread(create)
        except BaseException:
            self._release(upload_id)
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
            with _storage_errors():
                fd, size, hasher = await asyncio.to_thread(reopen)
        except BaseException:
            self._release(upload_id)
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

        with _storage_errors():
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
                try:
                    (self._uploads / upload.upload_id).unlink()
                except FileNotFoundError:
                    continue
                removed.append(upload)
            if removed:
                _fsync_dir(self._uploads)
            return removed

        with _storage_errors():
            return await asyncio.to_thread(remove)

    async def stat(self, digest: str) -> BlobInfo | None:
        path = self.blob_path(check_digest(digest))
        try:
            with _storage_errors():
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
    ) -> AsyncIterator[bytes]:
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

        with _storage_errors():
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
                with _storage_errors():
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
            _fsync_dir(path.parent)
            return True

        with _storage_errors():
            return await asyncio.to_thread(remove)

    async def close(self) -> None:
        """Nothing to release: file handles belong to uploads and readers."""

    def _publish(self, fd: int, staged: Path, digest: str) -> BlobInfo:
        """Move verified bytes under their digest (runs on a worker thread)."""
        final = self.blob_path(digest)
        size = os.fstat(fd).st_size
        if final.exists():
            staged.unlink()
        else:
            if not final.parent.exists():
                final.parent.mkdir(exist_ok=True)
                _fsync_dir(self._blobs)
            os.fchmod(fd, 0o444)
            # Atomic: readers see no blob or the whole blob. A concurrent commit of
            # the same content replaces it with identical bytes.
            os.rename(staged, final)
            _fsync_dir(final.parent)
        _fsync_dir(self._uploads)
        return BlobInfo(digest, size)


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
        self._buf = bytearray()
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
        self._buf += data
        self._written += len(data)
        if len(self._buf) >= self._store._buffer_size:
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
                self._failed = _translate(result)
                if self._failed is result:
                    raise result
                raise self._failed from result

    async def _spill(self, *, sync: bool) -> None:
        """Hash and write the buffer on two threads; wait only for the block before it."""
        fd = self._live_fd()
        await self._settle()
        block, self._buf = self._buf, bytearray()
        start = self._file_end
        self._file_end += len(block)

        def write_block() -> None:
            _pwrite_all(fd, block, start)
            if sync:
                os.fdatasync(fd)

        self._pending = [
            asyncio.ensure_future(asyncio.to_thread(self._hasher.update, block)),
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
        with _storage_errors():
            info = await asyncio.to_thread(self._store._publish, fd, self._path, digest)
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
            _fsync_dir(self._path.parent)

        try:
            with _storage_errors():
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
        self._buf = bytearray()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._store._release(self._id)
