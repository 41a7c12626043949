"""One upload staged as S3 segment objects: the `Staging` of an S3 store.

See `s3_layout` for the keys and how segments compose. Each append is one
segment PUT with a CRC32C that S3 checks on arrival, so an append is durable
when it returns. Publishing composes the segments under the digest server
side; the object appears at once, when its multipart upload completes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import io
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from .base import Chunk, OpenUploads, hex_of
from .s3_client import BucketClient, crc32c_args, s3_errors
from .s3_layout import MIN_PART_SIZE, Layout, Segment, plan_parts

# Server-side part copies in flight at once during a publish.
_COPY_CONCURRENCY = 8


class S3Staging:
    """See `Staging`; `segments` is the chain already staged (empty for a new upload)."""

    def __init__(
        self,
        client: BucketClient,
        layout: Layout,
        upload_id: str,
        segments: list[Segment],
        *,
        segment_size: int,
        checksums: bool,
        claims: OpenUploads,
        composing: list[str],
    ) -> None:
        self._client = client
        self._bucket = client.bucket
        self._layout = layout
        self._id = upload_id
        self._segments = list(segments)
        # The last segment's bytes while it is shorter than a part may be.
        self._short: bytes | None = None
        self._segment_size = segment_size
        self._checksums = checksums
        self._claims = claims
        # Blob keys this process is composing; shared with the store so that
        # reclaiming never aborts a compose in flight here.
        self._composing = composing

    @property
    def block_size(self) -> int:
        return self._segment_size

    async def append(self, offset: int, chunks: Sequence[Chunk], size: int, *, sync: bool) -> bool:
        if not size:
            return True
        short = self._short if self._segments and self._segments[-1].end == offset else None
        rewrite = short is not None
        start = self._segments[-1].start if rewrite else offset
        # Gathered into a BytesIO of its own (one copy), which the HTTP client
        # streams out in small reads. Given bytes, botocore wraps them in a
        # BytesIO that shares them, and aiohttp then copies that whole, on the
        # event loop, to size it.
        body = io.BytesIO()
        for part in [short, *chunks] if short is not None else chunks:
            body.write(part)
        del chunks, short  # the PUT takes a while: hold its bytes once, not twice
        length = body.tell()
        body.seek(0)
        with body.getbuffer() as view:
            extra = await asyncio.to_thread(crc32c_args, view, self._checksums)
            # Kept while shorter than a part may be (see below).
            kept = bytes(view) if length < MIN_PART_SIZE else None
        s3 = await self._client.s3()
        with s3_errors():
            # Over the short segment, if any: its object is replaced by a
            # longer one that starts with the same bytes.
            await s3.put_object(
                Bucket=self._bucket,
                Key=self._layout.segment(self._id, start),
                Body=body,
                **extra,
            )
        if rewrite:
            self._segments[-1] = Segment(start, length)
        else:
            self._segments.append(Segment(start, length))
        # A flush seals what is buffered, often less than S3's smallest part.
        # Kept, it goes out again with the next append, which rewrites the
        # segment whole; a compose then copies every part server side instead
        # of reading short segments back. Lost on a restart: a compose reads
        # back what is left (see `plan_parts`).
        self._short = kept
        return True

    async def read_back(self) -> AsyncGenerator[bytes, None]:
        for seg in self._segments:
            yield await self._client.read(self._layout.segment(self._id, seg.start))

    async def publish(self, digest: str) -> None:
        key = self._layout.blob(hex_of(digest))
        if await self._client.size(key) is None:
            s3 = await self._client.s3()
            with s3_errors():
                if not self._segments:
                    await s3.put_object(Bucket=self._bucket, Key=key, Body=b"")
                elif len(self._segments) == 1:
                    source = self._layout.segment(self._id, self._segments[0].start)
                    await s3.copy_object(
                        Bucket=self._bucket,
                        Key=key,
                        CopySource={"Bucket": self._bucket, "Key": source},
                    )
                else:
                    self._composing.append(key)
                    try:
                        await self._compose(key)
                    finally:
                        self._composing.remove(key)
        await self.discard()

    async def _compose(self, key: str) -> None:
        s3 = await self._client.s3()
        mpu = await s3.create_multipart_upload(Bucket=self._bucket, Key=key)
        mpu_id = mpu["UploadId"]
        copies = asyncio.Semaphore(_COPY_CONCURRENCY)
        reads = asyncio.Lock()

        async def part(number: int, group: list[Segment]) -> dict[str, Any]:
            if len(group) == 1:
                async with copies:
                    source = self._layout.segment(self._id, group[0].start)
                    resp = await s3.upload_part_copy(
                        Bucket=self._bucket,
                        Key=key,
                        UploadId=mpu_id,
                        PartNumber=number,
                        CopySource={"Bucket": self._bucket, "Key": source},
                    )
                return {"PartNumber": number, "ETag": resp["CopyPartResult"]["ETag"]}
            async with reads:  # one read-back part in memory at a time
                data = bytearray()
                for seg in group:
                    data += await self._client.read(self._layout.segment(self._id, seg.start))
                md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
                resp = await s3.upload_part(
                    Bucket=self._bucket,
                    Key=key,
                    UploadId=mpu_id,
                    PartNumber=number,
                    Body=data,
                    ContentMD5=md5,
                )
                return {"PartNumber": number, "ETag": resp["ETag"]}

        try:
            parts = await asyncio.gather(
                *(part(n, group) for n, group in enumerate(plan_parts(self._segments), start=1))
            )
            await s3.complete_multipart_upload(
                Bucket=self._bucket, Key=key, UploadId=mpu_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            # Shielded so a cancelled commit still cleans up; reclaim catches what slips.
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    s3.abort_multipart_upload(Bucket=self._bucket, Key=key, UploadId=mpu_id)
                )
            raise

    async def discard(self) -> None:
        await self._client.delete_prefix(self._layout.upload(self._id))

    def release(self) -> None:
        self._claims.release(self._id)
