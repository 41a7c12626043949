"""Header slots of an S3 store: see `stored_form`.

An object up to 64 MiB is replaced by one GET and one PUT. A larger one by a
multipart upload: the new header and the next few MiB as the first part
(every part but the last must be at least 5 MiB), the rest as server-side
range copies of the object itself, pinned to its ETag.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from botocore.exceptions import ClientError

from ..base import DIGEST_PREFIX, hex_of
from ..s3_client import crc32c_args, not_found, s3_errors
from ..s3_layout import Layout, Segment, contiguous
from .segments import HEADER_SIZE, RECORD_OVERHEAD, SEGMENT_SIZE
from .stored_form import MARK, MARK_TEXT

_SMALL_OBJECT = 64 * 1024 * 1024
_FIRST_PART = 8 * 1024 * 1024
_COPY_PART = 1024 * 1024 * 1024


class S3StoredForm:
    def __init__(self, client: Any, bucket: str, layout: Layout, *, checksums: bool) -> None:
        self._s3 = client
        self._bucket = bucket
        self._checksums = checksums
        self._layout = layout
        self._prefix = layout.blobs

    @property
    def _mark(self) -> str:
        return self._layout.blobs.removesuffix("blobs/sha256/") + MARK

    async def is_encrypted(self) -> bool:
        try:
            with s3_errors():
                await self._s3.head_object(Bucket=self._bucket, Key=self._mark)
        except ClientError as exc:
            if not_found(exc):
                return False
            raise
        return True

    async def mark_encrypted(self) -> None:
        if not await self.is_encrypted():
            with s3_errors():
                await self._s3.put_object(Bucket=self._bucket, Key=self._mark, Body=MARK_TEXT)

    async def staged_plaintext(self) -> dict[str, int]:
        segments: dict[str, list[Segment]] = {}
        paginator = self._s3.get_paginator("list_objects_v2")
        with s3_errors():
            async for page in paginator.paginate(Bucket=self._bucket, Prefix=self._layout.uploads):
                for obj in page.get("Contents", []):
                    parsed = self._layout.parse(obj["Key"])
                    if parsed is not None and parsed[1] is not None:
                        seg = Segment(parsed[1].start, int(obj["Size"]))
                        segments.setdefault(parsed[0], []).append(seg)
        return {
            upload_id: sum(_plaintext_of(seg) for seg in contiguous(segs)[0])
            for upload_id, segs in segments.items()
        }

    async def digests(self) -> AsyncIterator[str]:
        paginator = self._s3.get_paginator("list_objects_v2")
        with s3_errors():
            async for page in paginator.paginate(Bucket=self._bucket, Prefix=self._prefix):
                for obj in page.get("Contents", []):
                    yield DIGEST_PREFIX + obj["Key"][len(self._prefix) :]

    async def _get(self, key: str, first: int, last: int) -> bytes:
        with s3_errors():
            resp = await self._s3.get_object(
                Bucket=self._bucket, Key=key, Range=f"bytes={first}-{last}"
            )
            async with resp["Body"] as body:
                data: bytes = await body.read()
        return data

    async def replace_header(self, digest: str, header: bytes) -> bool:
        key = self._prefix + hex_of(digest)
        s3 = self._s3
        try:
            with s3_errors():
                head = await s3.head_object(Bucket=self._bucket, Key=key)
        except ClientError as exc:
            if not_found(exc):
                return False
            raise
        size = int(head["ContentLength"])
        etag = head["ETag"]
        if size <= _SMALL_OBJECT:
            body = header + await self._get(key, HEADER_SIZE, size - 1)
            with s3_errors():
                await s3.put_object(
                    Bucket=self._bucket, Key=key, Body=body, **crc32c_args(body, self._checksums)
                )
            return True
        with s3_errors():
            mpu = await s3.create_multipart_upload(Bucket=self._bucket, Key=key)
        mpu_id = mpu["UploadId"]
        try:
            first = header + await self._get(key, HEADER_SIZE, _FIRST_PART - 1)
            with s3_errors():
                part = await s3.upload_part(
                    Bucket=self._bucket,
                    Key=key,
                    UploadId=mpu_id,
                    PartNumber=1,
                    Body=first,
                    **crc32c_args(first, self._checksums),
                )
            parts = [{"PartNumber": 1, "ETag": part["ETag"]}]
            for number, start in enumerate(range(_FIRST_PART, size, _COPY_PART), start=2):
                end = min(size, start + _COPY_PART) - 1
                with s3_errors():
                    copied = await s3.upload_part_copy(
                        Bucket=self._bucket,
                        Key=key,
                        UploadId=mpu_id,
                        PartNumber=number,
                        CopySource={"Bucket": self._bucket, "Key": key},
                        CopySourceRange=f"bytes={start}-{end}",
                        CopySourceIfMatch=etag,
                    )
                parts.append({"PartNumber": number, "ETag": copied["CopyPartResult"]["ETag"]})
            with s3_errors():
                await s3.complete_multipart_upload(
                    Bucket=self._bucket,
                    Key=key,
                    UploadId=mpu_id,
                    MultipartUpload={"Parts": parts},
                )
        except BaseException:
            await asyncio.shield(
                s3.abort_multipart_upload(Bucket=self._bucket, Key=key, UploadId=mpu_id)
            )
            raise
        return True


def _plaintext_of(seg: Segment) -> int:
    """Plaintext in one staged segment: one append, whole records, all full but the last.

    Assumes the default segment size, the only one a server writes.
    """
    size = seg.size - (HEADER_SIZE if seg.start == 0 else 0)
    records = -(-size // (SEGMENT_SIZE + RECORD_OVERHEAD))
    return max(0, size - records * RECORD_OVERHEAD)
