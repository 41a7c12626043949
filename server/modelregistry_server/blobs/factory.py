"""Choose a blob store from the `--blob-store` URL, with encryption and S3 SSE if asked."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from .base import BlobStore
from .s3_sse import ServerSideEncryption
from .staged_upload import StagingLayer

if TYPE_CHECKING:
    # Encryption (and `cryptography`) loads only with a keyring.
    from .encryption.keyring import KeyWrapper


async def open_blob_store(
    url: str,
    endpoint_url: str | None = None,
    *,
    region: str | None = None,
    keys: KeyWrapper | None = None,
    sse: ServerSideEncryption | None = None,
) -> BlobStore:
    """`file:///abs/dir` or `s3://bucket/prefix`; ValueError for anything else.

    For S3, the endpoint, region and credentials come from the usual AWS
    environment variables and config files (`AWS_ENDPOINT_URL_S3`,
    `AWS_REGION`, `AWS_PROFILE`...); `endpoint_url` and `region` override them
    (the `--s3-endpoint-url` flag, or a test server; empty means unset). The
    S3 client connects on first use.

    With `keys`, blobs and their staging are encrypted at rest (see
    `encryption`); `sse` adds S3 server-side encryption headers (S3 only).
    """
    layer: StagingLayer | None = None
    if keys is not None:
        from .encryption.encrypted_store import encrypting_layer

        layer = encrypting_layer(keys)
    inner = await _open_backend(url, endpoint_url, region, layer, sse)
    if keys is None:
        return inner
    from .encryption.encrypted_store import EncryptedBlobStore

    return EncryptedBlobStore(inner, keys)


async def _open_backend(
    url: str,
    endpoint_url: str | None,
    region: str | None,
    layer: StagingLayer | None,
    sse: ServerSideEncryption | None,
) -> BlobStore:
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise ValueError(f"blob store URL {url!r}: no query or fragment allowed")
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError(f"blob store URL {url!r}: use an absolute path, file:///dir")
        if sse is not None:
            raise ValueError("--s3-sse applies to an s3:// blob store only")
        from .local_blobs import LocalBlobStore

        return LocalBlobStore(Path(unquote(parts.path)), staging_layer=layer)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ValueError(f"blob store URL {url!r}: name a bucket, s3://bucket/prefix")
        # Imported here so a local-only server never loads the AWS SDK.
        from . import s3_sdk

        s3_sdk.load()
        from .s3_blobs import S3BlobStore

        store = S3BlobStore(
            parts.netloc,
            unquote(parts.path),
            endpoint_url=endpoint_url or None,
            region=region or None,
            staging_layer=layer,
        )
        if sse is not None:
            sse.install(await store.s3())  # creating the client does not connect
        return store
    raise ValueError(f"blob store URL {url!r}: use file:///dir or s3://bucket/prefix")
