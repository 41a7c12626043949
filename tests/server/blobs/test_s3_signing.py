"""Which S3 PUT bodies the server signs: botocore would hash every uploaded
byte a second time, on the event loop, to sign it. Over TLS with a CRC32C
that S3 checks, the server sends the body unsigned; over plain HTTP, or with
checksums off, it signs. The first test stops the requests before they
leave (no S3 needed); the second runs an upload over TLS to a moto server."""

from __future__ import annotations

import hashlib
import random
import uuid
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest
from modelregistry_server.blobs import open_blob_store
from modelregistry_server.blobs.s3_blobs import S3BlobStore
from modelregistry_server.blobs.s3_client import BucketClient, crc32c_args
from support.moto import moto_server, s3_env
from support.pki import issue, make_ca

MiB = 1024 * 1024

UNSIGNED = b"UNSIGNED-PAYLOAD"


def is_signed(headers: Any) -> bool:
    """Whether a request's headers carry its body's sha256 rather than UNSIGNED-PAYLOAD."""
    value = headers["X-Amz-Content-SHA256"]
    return bool((value.encode() if isinstance(value, str) else value) != UNSIGNED)


class _Stopped(Exception):
    pass


@pytest.mark.parametrize(
    ("endpoint", "checksummed", "signed"),
    [
        (None, True, False),  # AWS itself: https
        ("https://s3.internal.example:9000", True, False),
        ("https://s3.internal.example:9000", False, True),
        ("http://127.0.0.1:9000", True, True),
    ],
)
async def test_bodies_are_signed_only_where_tls_and_a_checksum_do_not_cover_them(
    monkeypatch: pytest.MonkeyPatch, endpoint: str | None, checksummed: bool, signed: bool
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    client = BucketClient(
        "bucket", endpoint_url=endpoint, region="us-east-1", checksummed=checksummed
    )
    s3 = await client.s3()
    sent: dict[str, Any] = {}

    def stop(request: Any, **_: object) -> None:
        sent.update(request.headers)
        raise _Stopped

    s3.meta.events.register("before-send.s3.PutObject", stop)
    body = b"model bytes " * 1000
    try:
        with pytest.raises(_Stopped):
            await s3.put_object(
                Bucket="bucket", Key="segment", Body=body, **crc32c_args(body, checksummed)
            )
    finally:
        await client.close()
    assert ("x-amz-checksum-crc32c" in sent) == checksummed
    assert is_signed(sent) == signed


async def test_an_upload_over_tls_goes_unsigned_checksummed_and_whole(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ca, ca_cert, ca_key = make_ca("s3-ca")
    server = issue(ca_cert, ca_key, "localhost", server=True)
    cert = server.write(tmp_path / "s3.pem")
    s3_env(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(ca.write(tmp_path / "ca.pem")))
    with moto_server(tmp_path / "moto.log", tls=(cert, cert.with_suffix(".key"))) as endpoint:
        assert endpoint.startswith("https://")
        store = await open_blob_store(f"s3://tls-{uuid.uuid4().hex[:12]}/registry", endpoint)
        assert isinstance(store, S3BlobStore)
        try:
            s3 = await store.s3()
            await s3.create_bucket(Bucket=store.bucket)
            sent: list[tuple[bool, bool]] = []

            def record(request: Any, **_: object) -> None:
                headers = request.headers
                sent.append((is_signed(headers), "x-amz-checksum-crc32c" in headers))

            s3.meta.events.register("before-send.s3.PutObject", record)
            data = random.Random(5).randbytes(12 * MiB + 3)
            upload = await store.begin_upload("over-tls", size_hint=len(data))
            for start in range(0, len(data), MiB):
                await upload.write(data[start : start + MiB])
                if start == 2 * MiB:
                    await upload.flush()  # a short segment, rewritten by the next append
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            info = await upload.commit(digest, len(data))
            segment_puts = [each for each in sent if each[1]]
            assert len(segment_puts) >= 3
            assert not any(signed for signed, _ in segment_puts)
            head = await s3.head_object(
                Bucket=store.bucket, Key=store.layout.blob(digest.removeprefix("sha256:"))
            )
            assert head["ContentLength"] == len(data)
            got = bytearray()
            async with aclosing(store.open_reader(info.digest)) as reader:
                async for chunk in reader:
                    got += chunk
            assert bytes(got) == data
        finally:
            await store.close()
