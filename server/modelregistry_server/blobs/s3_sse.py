"""S3 server-side encryption headers on every object the store writes (`--s3-sse`).

On top of (not instead of) the registry's own encryption: the bucket's
operators get SSE-S3 or SSE-KMS as their policies require. The headers go on
the requests that create objects (PutObject, CopyObject,
CreateMultipartUpload); parts and reads need none for these modes. They are
added by a botocore event hook on the store's client, so no call site has to
remember them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SSE_MODES = ("AES256", "aws:kms")
_CREATES = ("PutObject", "CopyObject", "CreateMultipartUpload")


@dataclass(frozen=True)
class ServerSideEncryption:
    mode: str
    kms_key_id: str = ""

    def __post_init__(self) -> None:
        if self.mode not in SSE_MODES:
            raise ValueError(f"--s3-sse {self.mode!r}: use one of {', '.join(SSE_MODES)}")
        if self.kms_key_id and self.mode != "aws:kms":
            raise ValueError("--s3-sse-kms-key-id needs --s3-sse aws:kms")

    def params(self) -> dict[str, str]:
        params = {"ServerSideEncryption": self.mode}
        if self.kms_key_id:
            params["SSEKMSKeyId"] = self.kms_key_id
        return params

    def install(self, client: Any) -> None:
        """Add the headers to every object-creating request `client` makes."""
        extra = self.params()

        def add_headers(params: dict[str, Any], **_: Any) -> None:
            for name, value in extra.items():
                params.setdefault(name, value)

        for operation in _CREATES:
            client.meta.events.register(f"before-parameter-build.s3.{operation}", add_headers)
