"""What only the stored form tells, per backend: blobs' headers, staged plaintext sizes.

Two things need the backend's own layout. A staging's plaintext size: every
flush that ends mid-segment closes a short record, so the stored size alone
does not give it; the local store parses the record lengths of its staging
file, the S3 store sums its staged segments (each one append of whole
records, all full but the last). And the header, for rewrapping:

Rewrapping changes only the fixed-size header at the start of a stored blob.
Stored blobs are immutable objects, so the header is replaced by writing the
whole object again under the same name: the content records are copied as
they are (a reflink or in-kernel copy on a local disk, server-side part
copies on S3), never decrypted. The swap is atomic (a rename; an S3 object
replaced by one PUT or one completed multipart upload). A reader that opened
the old object reads the same records from either, since only the header
differs.

A blob deleted while its header is being replaced may come back (the garbage
collector's next pass finds it again); the window is one copy long.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

from ..base import DIGEST_PREFIX, BlobStore
from ..local_io import LocalLayout, fsync_dir, storage_errors
from .segments import HEADER_SIZE, RECORD_OVERHEAD, record_length

# At the store's root (beside blobs/ and uploads/): this store's blobs are encrypted.
MARK = "ENCRYPTED"
MARK_TEXT = b"blobs in this store are encrypted at rest; serve them with --encryption-keyring\n"


class StoredForm(Protocol):
    def digests(self) -> AsyncIterator[str]:
        """Every published blob's digest."""
        ...

    async def replace_header(self, digest: str, header: bytes) -> bool:
        """Write `header` over the first `HEADER_SIZE` bytes; False if the blob is gone."""
        ...

    async def staged_plaintext(self) -> dict[str, int]:
        """Plaintext bytes in each staged upload's whole records."""
        ...

    async def is_encrypted(self) -> bool:
        """Whether the store is marked as holding encrypted blobs."""
        ...

    async def mark_encrypted(self) -> None:
        """Mark the store: a server without a keyring then refuses to serve it."""
        ...


class LocalStoredForm:
    def __init__(self, root: Path) -> None:
        self._layout = LocalLayout(root)
        # upload id -> ((inode, header), parsed up to, plaintext so far)
        self._parsed: dict[str, tuple[tuple[int, bytes], int, int]] = {}

    async def digests(self) -> AsyncIterator[str]:
        def scan() -> list[str]:
            found: list[str] = []
            for shard in sorted(self._layout.blobs.iterdir()):
                if shard.is_dir():
                    found.extend(
                        DIGEST_PREFIX + p.name
                        for p in sorted(shard.iterdir())
                        if not p.name.startswith(".")
                    )
            return found

        with storage_errors():
            found = await asyncio.to_thread(scan)
        for digest in found:
            yield digest

    async def is_encrypted(self) -> bool:
        return await asyncio.to_thread((self._layout.root / MARK).exists)

    async def mark_encrypted(self) -> None:
        def mark() -> None:
            path = self._layout.root / MARK
            if not path.exists():
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    os.write(fd, MARK_TEXT)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                fsync_dir(self._layout.root)

        with storage_errors():
            await asyncio.to_thread(mark)

    async def staged_plaintext(self) -> dict[str, int]:
        def scan() -> dict[str, int]:
            found = {}
            for path in self._layout.uploads.iterdir():
                try:
                    with path.open("rb") as f:
                        found[path.name] = self._parse(path.name, f.fileno())
                except FileNotFoundError:
                    continue
            for gone in self._parsed.keys() - found.keys():
                del self._parsed[gone]
            return found

        with storage_errors():
            return await asyncio.to_thread(scan)

    def _parse(self, upload_id: str, fd: int) -> int:
        """Plaintext in a staging file's whole records, parsed on from where the last
        call stopped (the header, which holds a random blob id, tells uploads apart)."""
        st = os.fstat(fd)
        head = os.pread(fd, HEADER_SIZE, 0)
        pos, plain = HEADER_SIZE, 0
        known = self._parsed.get(upload_id)
        if known is not None and known[0] == (st.st_ino, head) and known[1] <= st.st_size:
            pos, plain = known[1], known[2]
        while pos + 4 <= st.st_size:
            n = record_length(os.pread(fd, 4, pos))
            if pos + n > st.st_size:
                break
            plain += n - RECORD_OVERHEAD
            pos += n
        if len(head) == HEADER_SIZE:
            self._parsed[upload_id] = ((st.st_ino, head), pos, plain)
        return plain

    async def replace_header(self, digest: str, header: bytes) -> bool:
        path = self._layout.blob(digest)
        with storage_errors():
            return await asyncio.to_thread(_replace_local, path, header)


def _replace_local(path: Path, header: bytes) -> bool:
    assert len(header) == HEADER_SIZE
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    try:
        src = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(dst, header)
            size = os.fstat(src).st_size
            pos = HEADER_SIZE
            while pos < size:
                n = os.copy_file_range(src, dst, size - pos, pos, pos)
                if n == 0:
                    raise OSError("blob shrank while its header was replaced")
                pos += n
            os.fsync(dst)
            os.fchmod(dst, 0o400)
        finally:
            os.close(dst)
        if not path.exists():  # deleted meanwhile: do not bring it back
            tmp.unlink()
            return False
        os.rename(tmp, path)
        fsync_dir(path.parent)
        return True
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        os.close(src)


async def stored_form(store: BlobStore) -> StoredForm:
    """The slots of a local or S3 store (the one below encryption)."""
    from ..local_blobs import LocalBlobStore

    if isinstance(store, LocalBlobStore):
        return LocalStoredForm(store.root)
    from ..s3_blobs import S3BlobStore
    from .s3_stored_form import S3StoredForm

    if isinstance(store, S3BlobStore):
        return S3StoredForm(await store.s3(), store.bucket, store.layout, checksums=store.checksums)
    raise TypeError(f"no header slots for {type(store).__name__}")
