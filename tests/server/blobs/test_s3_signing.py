"""Which S3 PUT bodies the server signs: botocore would hash every uploaded
byte a second time, on the event loop, to sign it. Over TLS with a CRC32C
that S3 checks, the server sends the body unsigned; over plain HTTP, or with
checksums off, it signs. The requests are stopped before they leave, so no
S3 is needed: this checks what botocore would send."""

from __future__ import annotations

import pytest
from modelregistry_server.blobs.s3_client import BucketClient, crc32c_args

UNSIGNED = b"UNSIGNED-PAYLOAD"


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
    sent: dict[str, bytes] = {}

    def stop(request: object, **_: object) -> None:
        sent.update(request.headers)  # type: ignore[attr-defined]
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
    payload_hash = sent["X-Amz-Content-SHA256"]
    if isinstance(payload_hash, str):
        payload_hash = payload_hash.encode()
    assert (payload_hash != UNSIGNED) == signed
