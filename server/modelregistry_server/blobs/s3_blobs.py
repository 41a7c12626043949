"""Blob store on S3-compatible object storage, through aiobotocore.

See `s3_layout` for the keys and how staged segments are composed. Uploads are
`StagedUpload`s over `S3Staging`: nothing is written under `blobs/` until the
sha256 of the staged bytes matches. Reads are ranged GETs streamed in bounded
chunks.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from botocore.exceptions import ClientError

from ..domain.errors import (
    blob_not_found,
    blob_store_unavailable,
    upload_exists,
    upload_not_found,
)
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
    hex_of,
)
from .s3_client import BucketClient, not_found, s3_errors
from .s3_layout import (
    DEFAULT_SEGMENT_SIZE,
    MIN_PART_SIZE,
    Layout,
    Segment,
    contiguous,
    segment_size_for,
)
from .s3_staging import S3Staging
from .staged_upload import StagedUpload, Staging, StagingLayer

# S3's largest part: a recorded segment size beyond it (or below the smallest) is not ours.
_MAX_PART_SIZE = 5 * 1024**3


class S3BlobStore:
    """`BlobStore` on a bucket prefix; one client, created on first use."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        checksums: bool = True,
        max_attempts: int = 5,
        staging_layer: StagingLayer | None = None,
    ) -> None:
        self.bucket = bucket
        # Wraps each upload's staging (encryption at rest); None: stage as is.
        self.staging_layer = staging_layer
        self.layout = Layout(prefix)
        self.segment_size = segment_size
        # Off for S3-compatible servers that reject x-amz-checksum-crc32c.
        self.checksums = checksums
        self._client = BucketClient(
            bucket,
            endpoint_url=endpoint_url,
            region=region,
            max_attempts=max_attempts,
            checksummed=checksums,
        )
        self._open = OpenUploads()
        self._composing: list[str] = []

    async def s3(self) -> Any:
        """The aiobotocore client (connected on first use)."""
        return await self._client.s3()

    async def close(self) -> None:
        await self._client.close()

    def _staging(self, upload_id: str, segments: list[Segment], segment_size: int) -> Staging:
        staging = S3Staging(
            self._client,
            self.layout,
            upload_id,
            segments,
            segment_size=segment_size,
            checksums=self.checksums,
            claims=self._open,
            composing=self._composing,
        )
        return staging if self.staging_layer is None else self.staging_layer(upload_id, staging)

    async def begin_upload(self, upload_id: str, size_hint: int = 0) -> StagedUpload:
        segment_size = segment_size_for(size_hint, self.segment_size)
        self._open.claim(upload_id)
        try:
            s3 = await self.s3()
            with s3_errors():
                taken = await s3.list_objects_v2(
                    Bucket=self.bucket, Prefix=self.layout.upload(upload_id), MaxKeys=1
                )
            if taken.get("KeyCount", 0):
                raise upload_exists(upload_id)
            with s3_errors():
                await s3.put_object(
                    Bucket=self.bucket,
                    Key=self.layout.marker(upload_id),
                    Body=str(segment_size).encode(),
                )
        except BaseException:
            self._open.release(upload_id)
            raise
        return StagedUpload(upload_id, self._staging(upload_id, [], segment_size))

    async def resume_upload(self, upload_id: str) -> StagedUpload:
        self._open.claim(upload_id)
        try:
            found = marked = False
            segments: list[Segment] = []
            async for obj in self._client.objects(self.layout.upload(upload_id)):
                found = True
                parsed = self.layout.parse(obj["Key"])
                if parsed is not None and parsed[1] is not None:
                    segments.append(Segment(parsed[1].start, int(obj["Size"])))
                elif parsed is not None:
                    marked = True
            if not found:
                raise upload_not_found(upload_id)
            segment_size = self.segment_size
            if marked:
                segment_size = await self._recorded_segment_size(upload_id)
            chain, stray = contiguous(segments)
            await self._client.delete_keys([self.layout.segment(upload_id, s.start) for s in stray])
        except BaseException:
            self._open.release(upload_id)
            raise
        # The sha256 state cannot be stored in S3: the resume reads the chain back.
        return await StagedUpload.resume(upload_id, self._staging(upload_id, chain, segment_size))

    async def _recorded_segment_size(self, upload_id: str) -> int:
        """The segment size the upload's marker records; the store's default
        for a marker that records none (written before sizes were recorded)."""
        try:
            with s3_errors():
                text = (await self._client.read(self.layout.marker(upload_id))).strip()
        except ClientError as exc:
            if not_found(exc):  # reclaimed since it was listed
                raise upload_not_found(upload_id) from None
            raise
        if text.isdigit() and MIN_PART_SIZE <= int(text) <= _MAX_PART_SIZE:
            return int(text)
        return self.segment_size

    async def _uploads(self) -> dict[str, tuple[list[Segment], float]]:
        found: dict[str, tuple[list[Segment], float]] = {}
        async for obj in self._client.objects(self.layout.uploads):
            parsed = self.layout.parse(obj["Key"])
            if parsed is None:
                continue
            upload_id, seg = parsed
            segments, updated = found.get(upload_id, ([], 0.0))
            if seg is not None:
                segments.append(Segment(seg.start, int(obj["Size"])))
            found[upload_id] = (segments, max(updated, obj["LastModified"].timestamp()))
        return found

    async def list_uploads(self) -> list[UploadInfo]:
        infos = []
        for upload_id, (segments, updated) in sorted((await self._uploads()).items()):
            chain, _ = contiguous(segments)
            infos.append(UploadInfo(upload_id, chain[-1].end if chain else 0, updated))
        return infos

    async def reclaim_uploads(self, older_than: float) -> list[UploadInfo]:
        stale = self._open.reclaimable(await self.list_uploads(), older_than)
        for upload in stale:
            await self._client.delete_prefix(self.layout.upload(upload.upload_id))
        await self._abort_stale_composes(older_than)
        return stale

    async def _abort_stale_composes(self, older_than: float) -> None:
        """Multipart uploads left by a commit that died half way hold storage too.

        Composes running in this process are left alone whatever S3 reports
        as their start (some S3-compatible servers report a fixed date).
        """
        cutoff = time.time() - older_than
        s3 = await self.s3()
        paginator = s3.get_paginator("list_multipart_uploads")
        with s3_errors():
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=self.layout.blobs):
                for mpu in page.get("Uploads", []):
                    stale = mpu["Initiated"].timestamp() <= cutoff
                    if stale and mpu["Key"] not in self._composing:
                        await s3.abort_multipart_upload(
                            Bucket=self.bucket, Key=mpu["Key"], UploadId=mpu["UploadId"]
                        )

    async def stat(self, digest: str) -> BlobInfo | None:
        size = await self._client.size(self.layout.blob(hex_of(check_digest(digest))))
        return None if size is None else BlobInfo(digest, size)

    async def open_reader(
        self,
        digest: str,
        offset: int = 0,
        length: int | None = None,
        chunk_size: int = DEFAULT_READ_CHUNK,
    ) -> AsyncGenerator[bytes, None]:
        check_range(offset, length, chunk_size)
        info = await self.stat(digest)
        if info is None:
            raise blob_not_found(digest)
        remaining = clamp_range(offset, length, info.size)
        if remaining == 0:
            return
        s3 = await self.s3()
        try:
            with s3_errors():
                resp = await s3.get_object(
                    Bucket=self.bucket,
                    Key=self.layout.blob(hex_of(digest)),
                    Range=f"bytes={offset}-{offset + remaining - 1}",
                )
        except ClientError as exc:
            if not_found(exc):  # deleted since the HEAD
                raise blob_not_found(digest) from exc
            raise
        async with resp["Body"] as body:
            while remaining > 0:
                want = min(chunk_size, remaining)
                parts: list[bytes] = []
                got = 0
                with s3_errors():
                    while got < want:
                        part = await body.read(want - got)
                        if not part:
                            raise blob_store_unavailable("object storage cut a read short")
                        parts.append(part)
                        got += len(part)
                remaining -= want
                # One copy at most (none for a single part), and none kept
                # here while the caller holds the chunk: a slow client's
                # stream then pins one chunk, not three.
                parts[:] = [parts[0] if len(parts) == 1 else b"".join(parts)]
                del part
                yield parts.pop()

    async def list_blobs(self) -> AsyncIterator[StoredBlob]:
        async for obj in self._client.objects(self.layout.blobs):
            hex_digest = obj["Key"][len(self.layout.blobs) :]
            if "/" not in hex_digest:
                yield StoredBlob(
                    DIGEST_PREFIX + hex_digest, int(obj["Size"]), obj["LastModified"].timestamp()
                )

    async def delete(self, digest: str) -> bool:
        if await self.stat(digest) is None:
            return False
        s3 = await self.s3()
        with s3_errors():
            await s3.delete_object(Bucket=self.bucket, Key=self.layout.blob(hex_of(digest)))
        return True
