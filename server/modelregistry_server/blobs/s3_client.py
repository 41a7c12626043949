"""One bucket through one aiobotocore client: the calls an S3 store and its staging share.

Unreachable or overloaded S3 becomes `BLOB_STORE_UNAVAILABLE`; other client
errors (a missing bucket, bad credentials) are misconfiguration and stay
internal.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    ClientError,
    HTTPClientError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)
from crc32c import crc32c

from ..domain.errors import blob_store_unavailable

_UNAVAILABLE_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout"}


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


def not_found(exc: ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in {"404", "NoSuchKey", "NotFound"}


def crc32c_b64(data: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(crc32c(data).to_bytes(4, "big")).decode()


def crc32c_args(data: bytes | bytearray | memoryview, enabled: bool) -> dict[str, str]:
    """A PUT's arguments that have S3 check `data` against our CRC32C ({} if not `enabled`)."""
    if not enabled:
        return {}
    return {"ChecksumAlgorithm": "CRC32C", "ChecksumCRC32C": crc32c_b64(data)}


class BucketClient:
    """A bucket and the client that reaches it, created on first use."""

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        max_attempts: int = 5,
        checksummed: bool = True,
    ) -> None:
        self.bucket = bucket
        self._endpoint_url = endpoint_url
        # botocore signs each body's sha256 unless told otherwise: a second
        # full hash of every uploaded byte, on the event loop, that blocks
        # every other call meanwhile (9-10 ms per 8 MiB segment here). Over TLS
        # with a CRC32C that S3 checks (`checksummed`: every PUT of blob bytes
        # here carries one) the signature adds nothing: the reasoning botocore
        # applies itself when the checksum is one it computed.
        self._sign_payloads = not checksummed or (endpoint_url or "https:").startswith("http:")
        self._region = region
        self._max_attempts = max_attempts
        self._client: Any = None
        self._client_cm: Any = None
        self._client_lock = asyncio.Lock()

    async def s3(self) -> Any:
        if self._client is None:
            async with self._client_lock:
                if self._client is None:
                    config = AioConfig(
                        connect_timeout=10,
                        read_timeout=120,
                        retries={"max_attempts": self._max_attempts, "mode": "standard"},
                        max_pool_connections=64,
                        # We send our own CRC32C and need no extra hashing.
                        request_checksum_calculation="when_required",
                        response_checksum_validation="when_required",
                        s3={"payload_signing_enabled": self._sign_payloads},
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

    async def objects(self, prefix: str) -> AsyncIterator[dict[str, Any]]:
        s3 = await self.s3()
        paginator = s3.get_paginator("list_objects_v2")
        with s3_errors():
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    yield obj

    async def size(self, key: str) -> int | None:
        """The object's size, or None if there is no such object."""
        s3 = await self.s3()
        try:
            with s3_errors():
                head = await s3.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if not_found(exc):
                return None
            raise
        return int(head["ContentLength"])

    async def read(self, key: str) -> bytes:
        """A whole (small) object."""
        s3 = await self.s3()
        with s3_errors():
            resp = await s3.get_object(Bucket=self.bucket, Key=key)
            async with resp["Body"] as body:
                data: bytes = await body.read()
        return data

    async def delete_keys(self, keys: list[str]) -> None:
        s3 = await self.s3()
        for i in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[i : i + 1000]]
            with s3_errors():
                await s3.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                )

    async def delete_prefix(self, prefix: str) -> None:
        await self.delete_keys([obj["Key"] async for obj in self.objects(prefix)])
