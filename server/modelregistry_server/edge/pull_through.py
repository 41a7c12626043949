"""The edge's blob store: its own store (local directory or its own S3
bucket) in front of the primary's.

A blob the edge does not have is fetched from the primary once, on the
first `stat` that misses (a Download, or warming ahead): every concurrent
request for the same digest waits on that one fetch (single flight). The
bytes go through an ordinary staged upload of the local store, whose
commit checks size and sha256 against the digest before anything is
published, so the edge never serves bytes it has not verified; a fetch
that fails or does not verify publishes nothing, and the next request
fetches again.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import grpc
from modelregistry.v1 import artifact_service_pb2, artifact_service_pb2_grpc

from ..blobs.base import (
    DEFAULT_READ_CHUNK,
    BlobInfo,
    BlobStore,
    StoredBlob,
    Upload,
    UploadInfo,
)
from ..domain import errors

log = logging.getLogger("modelreg.edge")
# Flush staged bytes this often while fetching: a fetch interrupted by a
# crash leaves staging that the upload reclaimer removes later.
FLUSH_BYTES = 64 * 1024 * 1024
FETCH_CHUNK = 4 * 1024 * 1024


class PullThroughBlobs:
    """A BlobStore: `local`, filled from the primary on a miss."""

    def __init__(
        self,
        local: BlobStore,
        channel: grpc.aio.Channel,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self._local = local
        self._artifacts = artifact_service_pb2_grpc.ArtifactServiceStub(channel)
        self._metadata = metadata
        self._fetching: dict[str, asyncio.Future[BlobInfo | None]] = {}
        # How many fetches reached the primary (for operators and tests).
        self.fetches = 0

    async def stat(self, digest: str) -> BlobInfo | None:
        found = await self._local.stat(digest)
        if found is not None:
            return found
        return await self.ensure(digest)

    async def ensure(self, digest: str) -> BlobInfo | None:
        """The blob, fetched from the primary if missing here; None if the
        primary has no such blob. One fetch per digest at a time."""
        pending = self._fetching.get(digest)
        if pending is None:
            found = await self._local.stat(digest)
            if found is not None:
                return found
            pending = self._fetching.get(digest)
        if pending is None:
            task = asyncio.ensure_future(self._fetch(digest))
            self._fetching[digest] = task
            task.add_done_callback(lambda _t: self._fetching.pop(digest, None))
            pending = task
        # A caller that gives up does not cancel the fetch the others wait on.
        return await asyncio.shield(pending)

    async def _fetch(self, digest: str) -> BlobInfo | None:
        self.fetches += 1
        call: Any = self._artifacts.Download(
            artifact_service_pb2.DownloadRequest(digest=digest, chunk_bytes=FETCH_CHUNK),
            metadata=self._metadata,
        )
        upload: Upload | None = None
        try:
            first: Any = await call.read()
            if first is grpc.aio.EOF or not first.HasField("header"):  # type: ignore[attr-defined]
                raise _primary_failed("the primary sent no header")
            size = int(first.header.blob.size_bytes)
            upload = await self._local.begin_upload(f"edge-pull-{secrets.token_hex(8)}", size)
            unflushed = 0
            while True:
                message: Any = await call.read()
                if message is grpc.aio.EOF:  # type: ignore[attr-defined]
                    break
                data = message.chunk.data
                if message.chunk.offset != upload.written:
                    raise _primary_failed("the primary sent a chunk out of order")
                await upload.write(data)
                unflushed += len(data)
                if unflushed >= FLUSH_BYTES:
                    await upload.flush()
                    unflushed = 0
            await upload.flush()
            try:
                info = await upload.commit(expected_digest=digest, expected_size=size)
            except errors.InvalidArgument as exc:  # commit removed the staging
                log.error("a blob from the primary does not verify", extra={"digest": digest})
                raise _primary_failed("the bytes do not match the digest") from exc
            finally:
                upload = None
            log.info("edge fetched a blob", extra={"digest": digest, "size": size})
            return info
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise _primary_failed(exc.code().name) from exc
        finally:
            call.cancel()
            if upload is not None:
                await upload.cancel()

    # The rest is the local store's.

    async def begin_upload(self, upload_id: str, size_hint: int = 0) -> Upload:
        return await self._local.begin_upload(upload_id, size_hint)

    async def resume_upload(self, upload_id: str) -> Upload:
        return await self._local.resume_upload(upload_id)

    async def list_uploads(self) -> list[UploadInfo]:
        return await self._local.list_uploads()

    async def reclaim_uploads(self, older_than: float) -> list[UploadInfo]:
        return await self._local.reclaim_uploads(older_than)

    def open_reader(
        self,
        digest: str,
        offset: int = 0,
        length: int | None = None,
        chunk_size: int = DEFAULT_READ_CHUNK,
    ) -> AsyncGenerator[bytes, None]:
        return self._local.open_reader(digest, offset, length, chunk_size)

    async def delete(self, digest: str) -> bool:
        return await self._local.delete(digest)

    def list_blobs(self) -> AsyncIterator[StoredBlob]:
        """What this edge holds (a cache: the primary keeps the originals)."""
        return self._local.list_blobs()

    async def close(self) -> None:
        await self._local.close()


def _primary_failed(detail: str) -> errors.Unavailable:
    return errors.blob_store_unavailable(f"fetching from the primary failed: {detail}")
