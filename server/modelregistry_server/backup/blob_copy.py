"""Blobs between a blob store and a backup directory, by digest, verified.

Both directions skip what the other side already has (incremental) and
check every byte they move against the digest: into the backup by hashing
while writing (a file is renamed into place only when it matches), back
into a store through an ordinary upload, whose commit verifies size and
sha256 before anything is published.

The bytes are what the store's reader yields; a store that encrypts at rest
is to be wrapped around the store these functions get, not passed to them,
so that a backup holds the stored objects as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import Awaitable, Callable, Iterable
from contextlib import aclosing
from dataclasses import dataclass

from ..blobs.base import BlobStore
from ..domain.errors import DomainError
from .layout import BackupDir, BackupError, fsync_dir

CHUNK = 4 * 1024 * 1024
PARALLEL = 4


@dataclass
class CopyTally:
    copied: int = 0
    copied_bytes: int = 0
    present: int = 0
    missing: list[str] | None = None

    def __str__(self) -> str:
        return (
            f"{self.copied} blobs copied ({self.copied_bytes / 2**20:.1f} MiB),"
            f" {self.present} already there"
        )


async def _each(items: Iterable[str], work: Callable[[str], Awaitable[None]]) -> None:
    """`work(item)` for every item, `PARALLEL` at a time; the first error wins."""
    queue = list(items)

    async def worker() -> None:
        while queue:
            await work(queue.pop())

    await asyncio.gather(*(worker() for _ in range(PARALLEL)))


async def store_to_backup(store: BlobStore, backup: BackupDir, digests: list[str]) -> CopyTally:
    """Copy into the backup every digest it lacks. A digest the store does not
    have is listed in `missing` (the database refers to a blob that is gone)."""
    tally = CopyTally(missing=[])

    async def one(digest: str) -> None:
        target = backup.blob_path(digest)
        if target.exists():
            tally.present += 1
            return
        info = await store.stat(digest)
        if info is None:
            assert tally.missing is not None
            tally.missing.append(digest)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        sha = hashlib.sha256()
        size = 0
        try:
            with tmp.open("wb") as f:
                async with aclosing(store.open_reader(digest, chunk_size=CHUNK)) as reader:
                    async for chunk in reader:
                        sha.update(chunk)
                        size += len(chunk)
                        await asyncio.to_thread(f.write, chunk)
                await asyncio.to_thread(os.fsync, f.fileno())
            if "sha256:" + sha.hexdigest() != digest or size != info.size:
                raise BackupError(f"blob {digest} read back with another digest or size")
            os.replace(tmp, target)
            fsync_dir(target.parent)
        finally:
            tmp.unlink(missing_ok=True)
        tally.copied += 1
        tally.copied_bytes += size

    await _each(digests, one)
    return tally


async def backup_to_store(backup: BackupDir, store: BlobStore, digests: list[str]) -> CopyTally:
    """Upload into the store every digest it lacks, from the backup's files."""
    tally = CopyTally()

    async def one(digest: str) -> None:
        source = backup.blob_path(digest)
        try:
            size = source.stat().st_size
        except FileNotFoundError:
            raise BackupError(f"the backup lacks blob {digest} ({source})") from None
        if await store.stat(digest) is not None:
            tally.present += 1
            return
        upload_id = "restore-" + digest.removeprefix("sha256:")
        try:
            stale = await store.resume_upload(upload_id)  # an interrupted restore's
            await stale.cancel()
        except DomainError:
            pass
        upload = await store.begin_upload(upload_id, size)
        try:
            with source.open("rb") as f:
                while chunk := await asyncio.to_thread(f.read, CHUNK):
                    await upload.write(chunk)
            await upload.flush()
            await upload.commit(expected_digest=digest, expected_size=size)
        except BaseException:
            with contextlib.suppress(Exception):  # a failed commit already removed it
                await upload.cancel()
            raise
        tally.copied += 1
        tally.copied_bytes += size

    await _each(digests, one)
    return tally


def verify_backup_blobs(backup: BackupDir, digests: list[str]) -> list[str]:
    """The digests whose backup file is missing or does not hash to its name."""
    bad = []
    for digest in digests:
        sha = hashlib.sha256()
        try:
            with backup.blob_path(digest).open("rb") as f:
                while chunk := f.read(CHUNK):
                    sha.update(chunk)
        except FileNotFoundError:
            bad.append(digest)
            continue
        if "sha256:" + sha.hexdigest() != digest:
            bad.append(digest)
    return bad
