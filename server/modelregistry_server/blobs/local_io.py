"""Local file I/O shared by the local store and its staging files."""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..domain.errors import blob_store_full, blob_store_unavailable
from .base import Chunk, hex_of, upload_busy

_FULL = {errno.ENOSPC, errno.EDQUOT}
_UNREACHABLE = {errno.EIO, errno.ENOTCONN, errno.ESTALE, errno.ETIMEDOUT, errno.EHOSTDOWN}


@dataclass(frozen=True)
class LocalLayout:
    """Where a local store keeps things under its root (see `local_blobs`)."""

    root: Path

    @property
    def uploads(self) -> Path:
        return self.root / "uploads"

    @property
    def blobs(self) -> Path:
        return self.root / "blobs" / "sha256"

    def upload(self, upload_id: str) -> Path:
        return self.uploads / upload_id

    def blob(self, digest: str) -> Path:
        hex_digest = hex_of(digest)
        return self.blobs / hex_digest[:2] / hex_digest


def translate(exc: BaseException) -> BaseException:
    """The domain error a caller can act on, or `exc` itself (it then stays internal)."""
    if isinstance(exc, OSError):
        if exc.errno in _FULL:
            return blob_store_full()
        if exc.errno in _UNREACHABLE:
            return blob_store_unavailable("local storage I/O error")
    return exc


@contextmanager
def storage_errors() -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        translated = translate(exc)
        if translated is exc:
            raise
        raise translated from exc


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pwrite_all(fd: int, chunks: Sequence[Chunk], start: int, size: int) -> None:
    """Write `chunks` back to back from `start` (one pwritev, resumed if short)."""
    pos, end = start, start + size
    pending = [memoryview(c) for c in chunks if c]
    while pending:
        n = os.pwritev(fd, pending[:1024], pos)
        pos += n
        while pending and n >= len(pending[0]):
            n -= len(pending[0])
            pending.pop(0)
        if n:
            pending[0] = pending[0][n:]
    assert pos == end
    if hasattr(os, "posix_fadvise"):
        # Starts writeback of these pages now (and drops them once clean), so the
        # disk works while the next block fills and a multi-GB upload does not
        # crowd the page cache.
        os.posix_fadvise(fd, start, size, os.POSIX_FADV_DONTNEED)


def lock_or_busy(fd: int, upload_id: str) -> None:
    """Hold the staging file exclusively while an `Upload` has it open.

    The lock goes with the descriptor, so a crashed server leaves none behind;
    it keeps two server processes sharing a directory off the same upload.
    Closes `fd` when the upload is taken.
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise upload_busy(upload_id) from None
