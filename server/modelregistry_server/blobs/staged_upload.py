"""The one `Upload`: offsets, hashing and verify-then-publish, over any backend.

A backend stores bytes; it does not decide when they count. `StagedUpload`
does what every backend must get exactly the same way. Chunks are buffered as
received (no copy into a growing buffer on the event loop's thread) and handed
to the backend in blocks of its `block_size`, so a multi-GB upload costs a few
hundred thread hops or PUTs, not one per chunk. While the backend stores a
block, a worker thread adds it to the running sha256, and the next block fills
in memory: an upload holds at most two blocks whatever its size. Only offsets
the backend reports durable are acknowledged. At commit the size and sha256
are checked first, and only then is the backend asked to publish, so a wrong
byte never becomes visible under a digest.

After a restart `resume()` rebuilds the sha256 by reading the staged bytes
back: neither a file nor an S3 object can hold a hash's running state.

Below it, a `Staging` is one upload's bytes in one backend: append at the end,
read back, publish under a digest, discard. The split is that of a registry's
blob writer over its storage driver: the writer verifies, the driver stores.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing
from typing import Any, Protocol

from ..domain.errors import digest_mismatch, size_mismatch, upload_finished
from .base import DIGEST_PREFIX, BlobInfo, Chunk, check_digest
from .thread_jobs import wait_out


class Staging(Protocol):
    """One upload's staged bytes in one backend.

    Driven by one `StagedUpload`, which never runs two of these calls at once.
    Errors are domain errors (`BLOB_STORE_UNAVAILABLE`, `BLOB_STORE_FULL`) or
    stay internal.
    """

    @property
    def block_size(self) -> int:
        """Bytes to gather before an `append`: fewer hops, bounded memory."""
        ...

    async def append(self, offset: int, chunks: Sequence[Chunk], size: int, *, sync: bool) -> bool:
        """Store `chunks` (`size` bytes, possibly none) at `offset`, the end of the staging.

        Return whether every staged byte is durable now; with `sync` it must be.
        """
        ...

    def read_back(self) -> AsyncGenerator[bytes, None]:
        """The staged bytes from offset 0, in order, in bounded blocks."""
        ...

    async def publish(self, digest: str) -> None:
        """Make the staged (verified) bytes the blob `digest`, then drop the staging.

        Atomic: readers see no blob or the whole blob. If `digest` is already
        published the staging is just dropped (dedup).
        """
        ...

    async def discard(self) -> None:
        """Remove the staged bytes."""
        ...

    def release(self) -> None:
        """Let go of handles and of the upload id's claim; the staging stays. Called last."""
        ...


# How a store wraps each upload's staging before `StagedUpload` drives it
# (encryption at rest: `encryption.encrypted_store.encrypting_layer`).
StagingLayer = Callable[[str, Staging], Staging]


class StagedUpload:
    """`Upload` over a `Staging`; see the module docstring."""

    def __init__(
        self,
        upload_id: str,
        staging: Staging,
        offset: int = 0,
        hasher: hashlib._Hash | None = None,
    ) -> None:
        self._id = upload_id
        self._staging = staging
        self._block_size = staging.block_size
        self._hasher = hasher if hasher is not None else hashlib.sha256()
        # durable <= staged <= written: safe to acknowledge, handed to the
        # backend, accepted from the caller.
        self._durable = offset
        self._staged = offset
        self._written = offset
        self._chunks: list[Chunk] = []
        self._buffered = 0
        # The block in flight: its append (first: it answers "durable?") and its hashing.
        self._pending: list[asyncio.Future[Any]] = []
        self._failed: BaseException | None = None
        self._finished = False

    @classmethod
    async def resume(cls, upload_id: str, staging: Staging) -> StagedUpload:
        """Continue after everything the staging holds, which must be durable already."""
        hasher = hashlib.sha256()
        size = 0
        try:
            async with aclosing(staging.read_back()) as blocks:
                async for block in blocks:
                    await asyncio.to_thread(hasher.update, block)
                    size += len(block)
        except BaseException:
            staging.release()
            raise
        return cls(upload_id, staging, size, hasher)

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

    async def write(self, data: Chunk) -> None:
        self._check_live()
        # Held as given while nothing can change it and it pins little
        # more than itself (bytes, or a view of most of a bytes object, such
        # as the chunk of a received message): the copy cost a memcpy and an
        # allocation per chunk. Anything else is copied.
        self._chunks.append(data if _keepable(data) else bytes(data))
        self._buffered += len(data)
        self._written += len(data)
        if self._buffered >= self._block_size:
            await self._spill(sync=False)

    async def _settle(self) -> None:
        """Wait for the block in flight; a failure leaves the upload unusable but closable.

        The wait is shielded: if the caller is cancelled, the backend's write
        runs to the end and `close()` waits for it, so it never races a later
        write or a closed file. After a failure the hash may have moved past
        the staged bytes: only a resume, which reads them back, continues.
        """
        if not self._pending:
            return
        results = await asyncio.shield(asyncio.gather(*self._pending, return_exceptions=True))
        self._pending = []
        for result in results:
            if isinstance(result, BaseException):
                self._failed = result
                raise result
        if results[0]:
            self._durable = self._staged

    async def _spill(self, *, sync: bool) -> None:
        """Hand the buffer over and hash it meanwhile; wait only for the block before it
        (with `sync`, for this one too)."""
        self._check_live()
        await self._settle()
        if not self._buffered and not (sync and self._durable < self._staged):
            return
        block, self._chunks = self._chunks, []
        size, self._buffered = self._buffered, 0
        start = self._staged
        self._staged += size
        self._pending = [asyncio.ensure_future(self._staging.append(start, block, size, sync=sync))]
        if block:
            self._pending.append(
                asyncio.ensure_future(asyncio.to_thread(_hash, self._hasher, block))
            )
        del block  # the backend and the hash let go of it as soon as they can
        if sync:
            await self._settle()

    async def flush(self) -> int:
        await self._spill(sync=True)
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
        await self._staging.publish(digest)
        self._finish()
        return BlobInfo(digest, size)

    async def cancel(self) -> None:
        if self._finished:
            return
        try:
            await self._quiesce()
            await self._staging.discard()
        finally:
            self._finish()

    async def close(self) -> None:
        if not self._finished:
            try:
                await self._quiesce()
            finally:
                self._finish()

    async def _quiesce(self) -> None:
        """Wait for the block still in flight, whatever became of it, even
        when cancelled meanwhile (see `thread_jobs`): `release` then closes
        the file."""
        pending, self._pending = self._pending, []
        await wait_out(pending)

    def _finish(self) -> None:
        self._finished = True
        self._chunks = []
        self._buffered = 0
        self._staging.release()


def _keepable(data: Chunk) -> bool:
    if type(data) is bytes:
        return True
    # A small chunk in a large message (padded with unknown fields, say)
    # must not pin the message until a whole block has arrived.
    return (
        isinstance(data, memoryview)
        and type(data.obj) is bytes
        and data.nbytes * 2 >= len(data.obj)
    )


def _hash(hasher: hashlib._Hash, block: list[Chunk]) -> None:
    for chunk in block:
        hasher.update(chunk)
