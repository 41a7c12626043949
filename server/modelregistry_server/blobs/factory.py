"""Choose a blob store from the `--blob-store` URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from .base import BlobStore


async def open_blob_store(
    url: str, endpoint_url: str | None = None, *, region: str | None = None
) -> BlobStore:
    """`file:///abs/dir` or `s3://bucket/prefix`; ValueError for anything else.

    For S3, the endpoint, region and credentials come from the usual AWS
    environment variables and config files (`AWS_ENDPOINT_URL_S3`,
    `AWS_REGION`, `AWS_PROFILE`...); `endpoint_url` and `region` override them
    (the `--s3-endpoint-url` flag, or a test server; empty means unset). The
    S3 client connects on first use.
    """
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise ValueError(f"blob store URL {url!r}: no query or fragment allowed")
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError(f"blob store URL {url!r}: use an absolute path, file:///dir")
        from .local_blobs import LocalBlobStore

        return LocalBlobStore(Path(unquote(parts.path)))
    if parts.scheme == "s3":
        if not parts.netloc:
            raise ValueError(f"blob store URL {url!r}: name a bucket, s3://bucket/prefix")
        # Imported here so a local-only server never loads the AWS SDK.
        from .s3_blobs import S3BlobStore

        return S3BlobStore(
            parts.netloc,
            unquote(parts.path),
            endpoint_url=endpoint_url or None,
            region=region or None,
        )
    raise ValueError(f"blob store URL {url!r}: use file:///dir or s3://bucket/prefix")
