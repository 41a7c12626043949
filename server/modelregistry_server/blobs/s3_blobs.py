"""Blob store on S3-compatible object storage, through aiobotocore.

See `s3_layout` for the keys and how staged segments are composed. Nothing is
written under `blobs/` until the sha256 of the staged bytes matches; then the
object appears at once, when its multipart upload completes. Every staged
segment carries a CRC32C that S3 checks on arrival. Reads are ranged GETs
streamed in bounded chunks.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import google_crc32c
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    ClientError,
    HTTPClientError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

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
from .s3_layout import DEFAULT_SEGMENT_SIZE, Layout, Segment, contiguous, plan_parts
from .s3_upload import S3Upload

_UNAVAILABLE_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"}
# Server-side part copies in flight at once during a commit.
_COPY_CONCURRENCY = 8


@contextmanager
def s3_errors() -> Iterator[None]:
    """Unreachable or overloaded S3 becomes Unavailable; misconfiguration stays internal."""
    try:
        yield
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        code = exc.response.get("Error", {}).get("Code", "")
        if status >= 500 or code in _UNAVAILABLE_CODES:
            raise blob_store_unavailable("object storage error") from exc
        raise
    except (BotoConnectionError, HTTPClientError, aiohttp.ClientError, TimeoutError) as exc:
        raise blob_store_unavailable("object storage unreachable") from exc


def _not_found(exc: ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in {"404", "NoSuchKey", "NotFound"}


def crc32c_b64(data: bytes | bytearray) -> str:
    return base64.b64encode(google_crc32c.value(bytes(data)).to_bytes(4, "big")).decode()


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
    ) -> None:
        self.bucket = bucket
        self.layout = Layout(prefix)
        self.segment_size = segment_size
        # Off for S3-compatible servers that reject x-amz-checksum-crc32c.
        self.checksums = checksums
        self._endpoint_url = endpoint_url
        self._region = region
        self._max_attempts = max_attempts
        self._client: Any = None
        self._client_cm: Any = None
        self._client_lock = asyncio.Lock()
        self._open: set[str] = set()

    async def s3(self) -> Any:
        if self._client is None:
            async with self._client_lock:
                if self._client is None:
                    config = AioConfig(
                        connect_timeout=10,
                        read_timeout=120,
                        retries={"max_attempts": self._max_attempts, "mode": "standard"},
                        max_pool_connections=64,
                        # We send our own CRC32C (google-crc32c) and need no extra hashing.
                        request_checksum_calculation="when_required",
                        response_checksum_validation="when_required",
                    )
                    cm = get_session().create_client(
                        "s3",
                        endpoint_url=self._endpoint_url,
                        region_name=self._region,
                        config=config,
                    )
                    self._client = await cm.__aenter__()
                    self._client_cm = cm
        return self._client

    async def close(self) -> None:
        if self._client_cm is not None:
            cm, self._client_cm, self._client = self._client_cm, None, None
            await cm.__aexit__(None, None, None)

    def claim(self, upload_id: str) -> None:
        check_upload_id(upload_id)
        if upload_id in self._open:
            raise upload_busy(upload_id)
        self._open.add(upload_id)

    def release(self, upload_id: str) -> None:
        self._open.discard(upload_id)

    async def _list(self, prefix: str) -> AsyncIterator[dict[str, Any]]:
        s3 = await self.s3()
        paginator = s3.get_paginator("list_objects_v2")
        with s3_errors():
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    yield obj

    async def delete_keys(self, keys: list[str]) -> None:
        s3 = await self.s3()
        for i in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[i : i + 1000]]
            with s3_errors():
                await s3.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )

    async def delete_staging(self, upload_id: str) -> None:
        keys = [obj["Key"] async for obj in self._list(self.layout.upload(upload_id))]
        await self.delete_keys(keys)

    async def begin_upload(self, upload_id: str) -> S3Upload:
        self.claim(upload_id)
        try:
            s3 = await self.s3()
            with s3_errors():
                taken = await s3.list_objects_v2(
                    Bucket=self.bucket, Prefix=self.layout.upload(upload_id), MaxKeys=1
                )
            if taken.get("KeyCount", 0):
                raise upload_exists(upload_id)
            with s3_errors():
                await s3.put_object(Bucket=self.bucket, Key=self.layout.marker(upload_id), Body=b"")
        except BaseException:
            self.release(upload_id)
            raise
        return S3Upload(self, upload_id, [], hashlib.sha256())

    async def resume_upload(self, upload_id: str) -> S3Upload:
        self.claim(upload_id)
        try:
            found = False
            segments: list[Segment] = []
            async for obj in self._list(self.layout.upload(upload_id)):
                found = True
                parsed = self.layout.parse(obj["Key"])
                if parsed is not None and parsed[1] is not None:
                    segments.append(Segment(parsed[1].start, int(obj["Size"])))
            if not found:
                raise upload_not_found(upload_id)
            chain, stray = contiguous(segments)
            await self.delete_keys([self.layout.segment(upload_id, s.start) for s in stray])
            hasher = hashlib.sha256()
            s3 = await self.s3()
            for seg in chain:
                # Read back what is staged: the sha256 state cannot be stored in S3.
                with s3_errors():
                    resp = await s3.get_object(
                        Bucket=self.bucket, Key=self.layout.segment(upload_id, seg.start)
                    )
                    async with resp["Body"] as body:
                        data = await body.read()
                await asyncio.to_thread(hasher.update, data)
                del data
        except BaseException:
            self.release(upload_id)
            raise
        return S3Upload(self, upload_id, chain, hasher)

    async def _uploads(self) -> dict[str, tuple[list[Segment], float]]:
        found: dict[str, tuple[list[Segment], float]] = {}
        async for obj in self._list(self.layout.uploads):
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
        cutoff = time.time() - older_than
        stale = [
            u
            for u in await self.list_uploads()
            if u.updated_at <= cutoff and u.upload_id not in self._open
        ]
        for upload in stale:
            await self.delete_staging(upload.upload_id)
        await self._abort_stale_composes(cutoff)
        return stale

    async def _abort_stale_composes(self, cutoff: float) -> None:
        """Multipart uploads left by a commit that died half way hold storage too."""
        s3 = await self.s3()
        paginator = s3.get_paginator("list_multipart_uploads")
        with s3_errors():
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=self.layout.blobs):
                for mpu in page.get("Uploads", []):
                    if mpu["Initiated"].timestamp() <= cutoff:
                        await s3.abort_multipart_upload(
                            Bucket=self.bucket, Key=mpu["Key"], UploadId=mpu["UploadId"]
                        )

    async def stat(self, digest: str) -> BlobInfo | None:
        key = self.layout.blob(hex_of(check_digest(digest)))
        s3 = await self.s3()
        try:
            with s3_errors():
                head = await s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _not_found(exc):
                return None
            raise
        return BlobInfo(digest, int(head["ContentLength"]))

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
            if _not_found(exc):  # deleted since the HEAD
                raise blob_not_found(digest) from exc
            raise
        async with resp["Body"] as body:
            while remaining > 0:
                want = min(chunk_size, remaining)
                chunk = bytearray()
                with s3_errors():
                    while len(chunk) < want:
                        part = await body.read(want - len(chunk))
                        if not part:
                            raise blob_store_unavailable("object storage cut a read short")
                        chunk += part
                remaining -= want
                yield bytes(chunk)

    async def delete(self, digest: str) -> bool:
        if await self.stat(digest) is None:
            return False
        s3 = await self.s3()
        with s3_errors():
            await s3.delete_object(Bucket=self.bucket, Key=self.layout.blob(hex_of(digest)))
        return True

    async def put_segment(self, upload_id: str, start: int, data: bytearray) -> None:
        s3 = await self.s3()
        extra = {}
        if self.checksums:
            extra["ChecksumAlgorithm"] = "CRC32C"
            extra["ChecksumCRC32C"] = await asyncio.to_thread(crc32c_b64, data)
        with s3_errors():
            await s3.put_object(
                Bucket=self.bucket,
                Key=self.layout.segment(upload_id, start),
                Body=bytes(data),
                **extra,
            )

    async def publish(self, upload_id: str, segments: list[Segment], digest: str) -> BlobInfo:
        """Compose verified segments under the digest, then drop the staging."""
        size = segments[-1].end if segments else 0
        if await self.stat(digest) is None:
            key = self.layout.blob(hex_of(digest))
            s3 = await self.s3()
            with s3_errors():
                if not segments:
                    await s3.put_object(Bucket=self.bucket, Key=key, Body=b"")
                elif len(segments) == 1:
                    source = self.layout.segment(upload_id, segments[0].start)
                    await s3.copy_object(
                        Bucket=self.bucket,
                        Key=key,
                        CopySource={"Bucket": self.bucket, "Key": source},
                    )
                else:
                    await self._compose(upload_id, segments, key)
        await self.delete_staging(upload_id)
        return BlobInfo(digest, size)

    async def _compose(self, upload_id: str, segments: list[Segment], key: str) -> None:
        s3 = await self.s3()
        mpu = await s3.create_multipart_upload(Bucket=self.bucket, Key=key)
        mpu_id = mpu["UploadId"]
        copies = asyncio.Semaphore(_COPY_CONCURRENCY)
        reads = asyncio.Lock()

        async def part(number: int, group: list[Segment]) -> dict[str, Any]:
            if len(group) == 1:
                async with copies:
                    source = self.layout.segment(upload_id, group[0].start)
                    resp = await s3.upload_part_copy(
                        Bucket=self.bucket,
                        Key=key,
                        UploadId=mpu_id,
                        PartNumber=number,
                        CopySource={"Bucket": self.bucket, "Key": source},
                    )
                return {"PartNumber": number, "ETag": resp["CopyPartResult"]["ETag"]}
            async with reads:  # one read-back part in memory at a time
                data = bytearray()
                for seg in group:
                    got = await s3.get_object(
                        Bucket=self.bucket, Key=self.layout.segment(upload_id, seg.start)
                    )
                    async with got["Body"] as body:
                        data += await body.read()
                md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
                resp = await s3.upload_part(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=mpu_id,
                    PartNumber=number,
                    Body=bytes(data),
                    ContentMD5=md5,
                )
                return {"PartNumber": number, "ETag": resp["ETag"]}

        try:
            parts = await asyncio.gather(
                *(part(n, group) for n, group in enumerate(plan_parts(segments), start=1))
            )
            await s3.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=mpu_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            # Shielded so a cancelled commit still cleans up; reclaim catches what slips.
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    s3.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=mpu_id)
                )
            raise
