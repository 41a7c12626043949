"""The blob store interface: content-addressed blobs behind staged, resumable uploads.

A blob is an immutable byte string named by its digest, `sha256:<64 hex>`. Bytes
reach a blob only through an upload: they are staged under an upload id the
caller chooses, made durable by `flush()`, verified at `commit()` and only then
published under their digest. A wrong digest or size publishes nothing. An
upload survives a process restart: `resume_upload()` rebuilds the durable
offset and the running sha256 from what was staged. Every store's uploads are
one class, `staged_upload.StagedUpload`, over a small per-backend `Staging`:
the checks that decide what becomes visible are written once.

The artifact protocol maps onto it directly: the first message of an upload
stream begins or resumes an upload and reports `offset`; each chunk is checked
against `written` and passed to `write()`; the server acknowledges the offsets
`flush()` returns (never `written`); the last message commits.

An `Upload` has one owner at a time: its methods must not run concurrently,
and the same upload id must not be open twice. The service layer serializes
streams per upload id. Storage failures that mean the backend cannot be
reached raise `Unavailable("BLOB_STORE_UNAVAILABLE")`; other errors are
`DomainError`s from `modelregistry_server.domain.errors`.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from modelregistry.v1.error_reasons import ErrorMetadataKey, ErrorReason

from ..domain.digests import check_digest as check_digest
from ..domain.errors import Aborted, InvalidArgument, OutOfRange, offset_out_of_range

DIGEST_PREFIX = "sha256:"
# Readers yield chunks of at most this many bytes unless asked otherwise: large
# enough to keep per-chunk overhead negligible, small enough for one gRPC message.
DEFAULT_READ_CHUNK = 1024 * 1024
# Bytes as an upload takes them: a view lets a received chunk be staged
# without a copy.
Chunk = bytes | bytearray | memoryview
MAX_READ_CHUNK = 8 * 1024 * 1024

# Upload ids become file names and object keys, so they are kept to a safe alphabet.
_UPLOAD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True)
class BlobInfo:
    """A published blob."""

    digest: str
    size: int


@dataclass(frozen=True)
class StoredBlob:
    """A published blob as listed, with its age (garbage collection goes by it)."""

    digest: str
    size: int
    # Unix time the blob was last written (published).
    modified_at: float


@dataclass(frozen=True)
class UploadInfo:
    """A staged upload as found in storage (for status and reclaiming)."""

    upload_id: str
    # Bytes durably staged: where a resumed upload continues.
    offset: int
    # Unix time of the last durable write; reclaiming goes by it.
    updated_at: float


class Upload(Protocol):
    """One staged upload. Use from one task at a time."""

    @property
    def upload_id(self) -> str: ...

    @property
    def offset(self) -> int:
        """Bytes durably staged: the only offset a server may acknowledge."""
        ...

    @property
    def written(self) -> int:
        """Bytes accepted so far (durable or buffered): where the next write lands."""
        ...

    async def write(self, data: Chunk) -> None:
        """Append `data` at `written`. May buffer; only `flush()` promises
        durability. `data` must not change afterwards unless it is mutable
        (a bytearray, or a view of one), which is copied."""
        ...

    async def flush(self) -> int:
        """Make every written byte durable and return the durable offset (== `written`)."""
        ...

    async def commit(
        self, expected_digest: str | None = None, expected_size: int | None = None
    ) -> BlobInfo:
        """Verify size and sha256, then publish the blob and remove the staging.

        If the digest is already published the staging is discarded (dedup) and
        the commit succeeds. On a mismatch (`SIZE_MISMATCH`, `DIGEST_MISMATCH`)
        nothing is published and the staging is removed. Either way the upload
        is finished afterwards.
        """
        ...

    async def cancel(self) -> None:
        """Remove the staging; the upload id is gone afterwards."""
        ...

    async def close(self) -> None:
        """Let go without finishing: release resources, keep the staging for a resume.

        Bytes not yet flushed may or may not survive; `resume_upload` reports
        what did. Idempotent, and a no-op after commit or cancel.
        """
        ...


class BlobStore(Protocol):
    """Content-addressed blob storage (local directory or S3)."""

    async def begin_upload(self, upload_id: str, size_hint: int = 0) -> Upload:
        """Start staging under a new id (`UPLOAD_EXISTS` if it is taken).

        `size_hint` is the blob's declared size (0: unknown); a store may size
        its staging by it (S3 picks a segment size that keeps the blob within
        its part limit).
        """
        ...

    async def resume_upload(self, upload_id: str) -> Upload:
        """Reopen staged bytes after a dropped stream or a restart (`UPLOAD_NOT_FOUND`)."""
        ...

    async def list_uploads(self) -> list[UploadInfo]:
        """Every staged upload, including ones open in this process."""
        ...

    async def reclaim_uploads(self, older_than: float) -> list[UploadInfo]:
        """Delete staging idle for at least `older_than` seconds; return what went.

        Uploads open in this process are left alone whatever their age.
        """
        ...

    async def stat(self, digest: str) -> BlobInfo | None:
        """The published blob, or None."""
        ...

    def open_reader(
        self,
        digest: str,
        offset: int = 0,
        length: int | None = None,
        chunk_size: int = DEFAULT_READ_CHUNK,
    ) -> AsyncGenerator[bytes, None]:
        """Stream `length` bytes (all to the end if None) from `offset`.

        An async generator: errors (`BLOB_NOT_FOUND`, `OFFSET_OUT_OF_RANGE` when
        `offset` > size) surface at the first `anext()`, before any byte. A
        range running past the end is cut at the end. Chunks are at most
        `chunk_size` bytes and memory stays bounded whatever the blob size.
        Close it (`contextlib.aclosing`) if you stop early.
        """
        ...

    async def delete(self, digest: str) -> bool:
        """Unpublish a blob; False if it was not there. Callers check references first."""
        ...

    def list_blobs(self) -> AsyncIterator[StoredBlob]:
        """Every published blob, in no particular order, without holding them all.
        Sizes are bytes as stored: with encryption at rest, content plus envelope."""
        ...

    async def close(self) -> None:
        """Release connections and threads; open uploads keep their staging."""
        ...


def check_upload_id(upload_id: str) -> str:
    if not _UPLOAD_ID.fullmatch(upload_id):
        raise InvalidArgument(
            ErrorReason.INVALID_UPLOAD_ID,
            "an upload id is 1-128 characters of A-Z a-z 0-9 . _ - and starts with a letter"
            " or digit",
            "upload_id",
        )
    return upload_id


def upload_busy(upload_id: str) -> Aborted:
    """Another stream (in this process or, for a local store, another one) holds it."""
    return Aborted(
        ErrorReason.UPLOAD_BUSY,
        f"upload {upload_id} is in use by another stream",
        {ErrorMetadataKey.UPLOAD_ID: upload_id},
    )


class OpenUploads:
    """Upload ids open in this process: one owner each, and reclaiming leaves them alone."""

    def __init__(self) -> None:
        self._ids: set[str] = set()

    def claim(self, upload_id: str) -> None:
        check_upload_id(upload_id)
        if upload_id in self._ids:
            raise upload_busy(upload_id)
        self._ids.add(upload_id)

    def release(self, upload_id: str) -> None:
        self._ids.discard(upload_id)

    def reclaimable(self, uploads: list[UploadInfo], older_than: float) -> list[UploadInfo]:
        """The uploads idle for at least `older_than` seconds and not open here."""
        cutoff = time.time() - older_than
        return [u for u in uploads if u.updated_at <= cutoff and u.upload_id not in self._ids]


def check_range(offset: int, length: int | None, chunk_size: int) -> None:
    """Reject what no blob could satisfy, before touching storage."""
    if offset < 0:
        raise OutOfRange(
            ErrorReason.OFFSET_OUT_OF_RANGE,
            "offset must not be negative",
            {ErrorMetadataKey.OFFSET: "<0"},
        )
    if length is not None and length < 0:
        raise InvalidArgument(ErrorReason.INVALID_LENGTH, "length must not be negative", "length")
    if not 0 < chunk_size <= MAX_READ_CHUNK:
        raise InvalidArgument(
            ErrorReason.INVALID_CHUNK_SIZE,
            f"chunk size must be 1..{MAX_READ_CHUNK} bytes",
            "chunk_size",
        )


def clamp_range(offset: int, length: int | None, size: int) -> int:
    """Bytes to read from `offset` in a blob of `size` bytes."""
    if offset > size:
        raise offset_out_of_range(offset, size)
    end = size if length is None else min(size, offset + length)
    return end - offset


def hex_of(digest: str) -> str:
    return digest[len(DIGEST_PREFIX) :]
