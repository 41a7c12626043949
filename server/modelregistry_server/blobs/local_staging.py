"""One upload staged in one local file: the `Staging` under a local store's uploads.

A block is written with one `pwritev` on a worker thread, after which the
kernel is asked to start writing it back, so the `fdatasync` of a synced
append waits only for the tail. Publishing renames the file under its digest,
which is atomic, and syncs the directories so the name survives a crash. The
file is `flock`ed for as long as it is open (see `local_io.lock_or_busy`).

A resumed upload trusts the staged file's length. Its bytes were checked
before they were written; if a crash ever tore the file, the final sha256
check at commit fails and nothing is published.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, Sequence

from ..private_files import PRIVATE_DIR, READ_ONLY_FILE
from .base import Chunk, OpenUploads
from .local_io import LocalLayout, fsync_dir, pwrite_all, storage_errors

_READ_BACK_BLOCK = 8 * 1024 * 1024


class LocalStaging:
    """See `Staging`; `fd` is the open, locked staging file."""

    def __init__(
        self,
        layout: LocalLayout,
        upload_id: str,
        fd: int,
        block_size: int,
        claims: OpenUploads,
    ) -> None:
        self._layout = layout
        self._id = upload_id
        self._path = layout.upload(upload_id)
        self._fd = fd
        self._open = True
        self._block_size = block_size
        self._claims = claims

    @property
    def block_size(self) -> int:
        return self._block_size

    async def append(self, offset: int, chunks: Sequence[Chunk], size: int, *, sync: bool) -> bool:
        fd = self._fd

        def write() -> None:
            if size:
                pwrite_all(fd, chunks, offset, size)
            if sync:
                os.fdatasync(fd)

        with storage_errors():
            await asyncio.to_thread(write)
        return sync

    async def read_back(self) -> AsyncGenerator[bytes, None]:
        pos = 0
        while True:
            with storage_errors():
                block = await asyncio.to_thread(os.pread, self._fd, _READ_BACK_BLOCK, pos)
            if not block:
                return
            pos += len(block)
            yield block

    async def publish(self, digest: str) -> None:
        with storage_errors():
            await asyncio.to_thread(self._publish, digest)

    def _publish(self, digest: str) -> None:
        final = self._layout.blob(digest)
        if final.exists():
            self._path.unlink()
        else:
            if not final.parent.exists():
                final.parent.mkdir(mode=PRIVATE_DIR, exist_ok=True)
                fsync_dir(self._layout.blobs)
            os.fchmod(self._fd, READ_ONLY_FILE)
            # Atomic: readers see no blob or the whole blob. A concurrent commit of
            # the same content replaces it with identical bytes.
            os.rename(self._path, final)
            fsync_dir(final.parent)
        fsync_dir(self._layout.uploads)

    async def discard(self) -> None:
        def remove() -> None:
            try:
                self._path.unlink()
            except FileNotFoundError:
                return
            fsync_dir(self._layout.uploads)

        with storage_errors():
            await asyncio.to_thread(remove)

    def release(self) -> None:
        if self._open:
            self._open = False
            os.close(self._fd)
            self._claims.release(self._id)
