"""Use cases of the data plane: resumable uploads, manifests, downloads.

An upload stream maps onto a staged blob-store upload: chunks are checked
(offset, size, CRC32C) before they are staged, only durable offsets are
acknowledged, and the blob becomes visible under its digest only after the
size and sha256 verify. An upload targeting a version carries its manifest;
publishing it makes the version READY in the same database transaction
that retires the upload.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Iterator
from contextlib import aclosing, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from crc32c import crc32c as _crc32c  # (write_chunk takes a `crc32c`)
from modelregistry.v1.error_reasons import ErrorMetadataKey, ErrorReason

from ..blobs.base import BlobInfo, BlobStore, Chunk, Upload, check_upload_id
from ..config import DEFAULTS
from ..domain import errors, request_context
from ..domain.digests import check_digest
from ..domain.manifest import MAX_MANIFEST_BYTES, MEDIA_TYPE, parse_manifest
from ..domain.names import VersionName, parse_alias_name, parse_model_name, parse_version_name
from ..domain.quotas import UploadLimits
from ..domain.resources import Artifact, ModelVersion, UploadRecord, VersionState
from ..store.base import RegistryStore, UploadStore
from .transfers import TransferLimits

log = logging.getLogger("modelreg.artifacts")

MAX_CHUNK_BYTES = 4 * 1024 * 1024
DEFAULT_DOWNLOAD_CHUNK = 1024 * 1024
MAX_BLOB_BYTES = 1 << 40
MAX_MEDIA_TYPE = 128


@dataclass(frozen=True)
class ArtifactSettings:
    # An upload that makes no progress for this long expires and is reclaimed.
    upload_ttl_s: float = DEFAULTS.upload_ttl_s
    # Acknowledge (and fdatasync) at least every this many bytes...
    flush_bytes: int = 64 * 1024 * 1024
    # ...or this often, whichever comes first.
    flush_interval_s: float = 1.0
    # A publish claims its manifest and files for this long; it must commit
    # within half of it (the other half absorbs clock skew between replicas),
    # or it fails with BLOB_COLLECTED and the client retries.
    publish_hold_s: float = 300.0
    # Quotas and the cap on open uploads per principal.
    limits: UploadLimits = field(default_factory=UploadLimits)
    # An upload stream that sends nothing for this long is ended (0: never).
    idle_timeout_s: float = DEFAULTS.upload_idle_timeout_s


@dataclass
class UploadSession:
    """One upload stream's view of an upload."""

    record: UploadRecord
    upload: Upload
    last_flush: float = field(default_factory=time.monotonic)
    done: bool = False

    @property
    def received(self) -> int:
        return self.upload.written

    @property
    def committed(self) -> int:
        return self.upload.offset


@dataclass(frozen=True)
class Published:
    blob: BlobInfo
    version: ModelVersion | None


@dataclass(frozen=True)
class Download:
    blob: BlobInfo
    media_type: str
    version: VersionName | None
    chunks: AsyncIterator[tuple[int, bytes, int]]


class BlobClaims(Protocol):
    async def hold(self, digests: Iterable[str], ttl_us: int) -> None:
        """Keep these blobs from the collector for `ttl_us` (see store.gc_sql)."""


class Artifacts:
    def __init__(
        self,
        registry: RegistryStore,
        uploads: UploadStore,
        blobs: BlobStore,
        settings: ArtifactSettings | None = None,
        limits: TransferLimits | None = None,
        claims: BlobClaims | None = None,
    ) -> None:
        self._registry = registry
        # Leases that keep blobs from the collector while they are being
        # referenced (None: no collector runs against this store).
        self._claims = claims
        self._uploads = uploads
        self._blobs = blobs
        self._settings = settings or ArtifactSettings()
        self._limits = limits or TransferLimits()
        # Upload ids with a stream attached in this process: one writer each.
        self._active: set[str] = set()

    @property
    def _ttl_us(self) -> int:
        return int(self._settings.upload_ttl_s * 1_000_000)

    # -- upload ---------------------------------------------------------------

    @contextmanager
    def upload_stream(self) -> Iterator[None]:
        """Hold one of the process's upload slots for the stream's lifetime."""
        with self._limits.upload():
            yield

    async def start(
        self,
        upload_id: str,
        size: int,
        digest: str,
        version: str,
        media_type: str,
        model: str = "",
    ) -> UploadSession | Published:
        """Begin or resume an upload; a known digest publishes at once (dedup)."""
        if upload_id:
            return await self._resume(check_upload_id(upload_id), size, digest)
        if not 0 <= size <= MAX_BLOB_BYTES:
            raise errors.InvalidArgument(
                ErrorReason.INVALID_SIZE, f"size_bytes must be 0 to {MAX_BLOB_BYTES}", "size_bytes"
            )
        if digest:
            check_digest(digest, "digest")
        if len(media_type) > MAX_MEDIA_TYPE:
            raise errors.InvalidArgument(
                ErrorReason.INVALID_FIELD, "media_type: at most 128 characters", "media_type"
            )
        target = None
        if version:
            target = parse_version_name(version, "version")
            media_type = media_type or MEDIA_TYPE
            if media_type != MEDIA_TYPE:
                raise errors.InvalidArgument(
                    ErrorReason.INVALID_FIELD,
                    f"media_type: a version's artifact is a manifest ({MEDIA_TYPE})",
                    "media_type",
                )
            if size > MAX_MANIFEST_BYTES:
                raise errors.InvalidArgument(
                    ErrorReason.INVALID_SIZE,
                    f"a manifest is at most {MAX_MANIFEST_BYTES} bytes",
                    "size_bytes",
                )
        counted = parse_model_name(model, "model") if model and target is None else None
        new_id = uuid.uuid4().hex
        ctx = request_context.current()
        record = await self._uploads.create_upload(
            new_id,
            target,
            size,
            digest or None,
            media_type,
            self._ttl_us,
            model=counted,
            principal=ctx.caller if ctx is not None else "",
            limits=self._settings.limits,
        )
        if digest:
            existing = await self._blobs.stat(digest)
            if existing is not None and existing.size == size:
                return await self._publish(record, existing)
        upload = await self._blobs.begin_upload(new_id, size)
        self._active.add(new_id)
        return UploadSession(record, upload)

    async def _resume(self, upload_id: str, size: int, digest: str) -> UploadSession:
        record = await self._uploads.get_upload(upload_id)
        if size and size != record.size_bytes:
            raise errors.InvalidArgument(
                ErrorReason.SIZE_MISMATCH,
                f"size_bytes {size} differs from the upload's {record.size_bytes}",
                "size_bytes",
            )
        if digest and record.digest and digest != record.digest:
            raise errors.InvalidArgument(
                ErrorReason.DIGEST_MISMATCH,
                "digest differs from the one the upload began with",
                "digest",
            )
        if upload_id in self._active:
            raise errors.Aborted(
                ErrorReason.UPLOAD_IN_PROGRESS,
                "another stream is writing this upload; retry when it has ended",
                {ErrorMetadataKey.UPLOAD_ID: upload_id},
            )
        self._active.add(upload_id)
        try:
            upload = await self._blobs.resume_upload(upload_id)
        except BaseException:
            self._active.discard(upload_id)
            raise
        return UploadSession(record, upload)

    async def write_chunk(
        self, session: UploadSession, offset: int, data: Chunk, crc32c: int
    ) -> int | None:
        """Stage one chunk; return the committed offset when it advanced."""
        if offset != session.received:
            raise _chunk_error(
                ErrorReason.UNEXPECTED_OFFSET,
                f"chunk offset {offset}, expected {session.received}",
                session,
            )
        if not 0 < len(data) <= MAX_CHUNK_BYTES:
            raise _chunk_error(
                ErrorReason.INVALID_CHUNK, f"a chunk carries 1 to {MAX_CHUNK_BYTES} bytes", session
            )
        if session.received + len(data) > session.record.size_bytes:
            raise _chunk_error(
                ErrorReason.SIZE_MISMATCH,
                f"chunk ends at {session.received + len(data)}, "
                f"past the declared size {session.record.size_bytes}",
                session,
            )
        if _crc32c(data) != crc32c:
            # Make what came before durable so the client resumes right here.
            await self._flush(session)
            raise _chunk_error(
                ErrorReason.CHECKSUM_MISMATCH,
                f"CRC32C mismatch in the chunk at offset {offset}",
                session,
            )
        await session.upload.write(data)
        due = session.received - session.committed >= self._settings.flush_bytes
        if due or time.monotonic() - session.last_flush >= self._settings.flush_interval_s:
            return await self._flush(session)
        return None

    async def _flush(self, session: UploadSession) -> int:
        before = session.committed
        committed = await session.upload.flush()
        session.last_flush = time.monotonic()
        if committed != before:
            await self._uploads.touch_upload(session.record.upload_id, self._ttl_us)
        return committed

    async def pause(self, session: UploadSession) -> int:
        """The client ended the stream without finishing: keep what it sent."""
        return await self._flush(session)

    @property
    def quiet_flush_s(self) -> float:
        """How long a stream may be quiet before its buffered bytes are flushed."""
        return self._settings.flush_interval_s

    @property
    def idle_timeout_s(self) -> float | None:
        """How long an upload stream may send nothing (None: no limit)."""
        return self._settings.idle_timeout_s or None

    async def idle(self, session: UploadSession) -> errors.Aborted:
        """The stream went quiet for the idle timeout: keep what it sent and
        say where to resume."""
        committed = await self._flush(session)
        return errors.Aborted(
            ErrorReason.UPLOAD_IDLE,
            f"the upload stream sent nothing for {self._settings.idle_timeout_s:g} s and was "
            f"ended; resume from {committed} with a new stream",
            {
                ErrorMetadataKey.UPLOAD_ID: session.record.upload_id,
                ErrorMetadataKey.COMMITTED_OFFSET: str(committed),
            },
        )

    async def finish(self, session: UploadSession, digest: str) -> Published:
        """Verify and publish. The failures leave the upload as documented:
        bytes still missing, resumable from the committed offset; a digest
        that disagrees (with the one given at start, or with the bytes),
        discarded with its staging; storage unreachable, resumable."""
        record = session.record
        if digest:
            check_digest(digest, "finish.digest")
            if record.digest and digest != record.digest:
                await self._discard(session)
                raise errors.InvalidArgument(
                    ErrorReason.DIGEST_MISMATCH, "finish.digest differs from start.digest", "digest"
                )
        expected = digest or record.digest
        if session.received != record.size_bytes:
            await self._flush(session)
            raise _chunk_error(
                ErrorReason.SIZE_MISMATCH,
                f"finish after {session.received} of {record.size_bytes} bytes",
                session,
            )
        try:
            blob = await session.upload.commit(expected, record.size_bytes)
        except errors.DomainError as exc:
            if exc.kind is not errors.ErrorKind.UNAVAILABLE:
                # The staging is gone (verification failed): so is the upload.
                session.done = True
                await self._uploads.delete_upload(record.upload_id)
            raise
        session.done = True
        return await self._publish(record, blob)

    async def _discard(self, session: UploadSession) -> None:
        session.done = True
        try:
            await session.upload.cancel()
        finally:
            await self._uploads.delete_upload(session.record.upload_id)

    async def _publish(self, record: UploadRecord, blob: BlobInfo) -> Published:
        publishing = record.version is not None
        # The deadline is taken before the first claim, so it is never later
        # than any claim's expiry minus half the hold.
        deadline_us = time.time_ns() // 1000 + int(self._settings.publish_hold_s * 500_000)
        try:
            ttl = self._settings.publish_hold_s if publishing else self._settings.upload_ttl_s
            await self._claim_blob(blob, ttl)
            if not publishing:
                await self._uploads.finish_upload(record.upload_id, _artifact(blob, record))
                return Published(blob, None)
            files = await self._check_manifest(blob)
        except errors.DomainError:
            await self._uploads.delete_upload(record.upload_id)
            raise
        version = await self._uploads.finish_upload(
            record.upload_id,
            _artifact(blob, record),
            files,
            deadline_us if self._claims is not None else None,
        )
        return Published(blob, version)

    async def _check_manifest(self, blob: BlobInfo) -> tuple[tuple[str, int], ...]:
        """Every file a manifest lists must already be stored, at its size;
        returns their digests and sizes (the version will reference them)."""
        data = bytearray()
        async with aclosing(self._blobs.open_reader(blob.digest)) as reader:
            async for chunk in reader:
                data += chunk
        manifest = parse_manifest(bytes(data))
        # Claimed before they are checked: a sweep either sees the claim or
        # has deleted them already, and then the check below fails.
        await self._hold((entry.digest for entry in manifest.files), self._settings.publish_hold_s)
        for entry in manifest.files:
            stored = await self._blobs.stat(entry.digest)
            if stored is None or stored.size != entry.size_bytes:
                raise errors.FailedPrecondition(
                    ErrorReason.MANIFEST_BLOB_MISSING,
                    f"manifest lists {entry.path!r} ({entry.digest}), which is not uploaded",
                    {
                        ErrorMetadataKey.PATH: entry.path[:256],
                        ErrorMetadataKey.DIGEST: entry.digest,
                    },
                )
        return tuple((entry.digest, entry.size_bytes) for entry in manifest.files)

    async def _hold(self, digests: Iterable[str], ttl_s: float) -> None:
        if self._claims is not None:
            await self._claims.hold(digests, int(ttl_s * 1_000_000))

    async def _claim_blob(self, blob: BlobInfo, ttl_s: float) -> None:
        """Lease the blob just uploaded (or found): a manifest's for its
        publish, a file's until a manifest references it. Then make sure the
        collector did not take it first."""
        if self._claims is None:
            return
        await self._hold((blob.digest,), ttl_s)
        if await self._blobs.stat(blob.digest) is None:
            raise errors.Aborted(
                ErrorReason.BLOB_COLLECTED,
                f"blob {blob.digest} was garbage-collected while this upload finished;"
                " upload it again",
                {ErrorMetadataKey.DIGEST: blob.digest},
            )

    async def release(self, session: UploadSession) -> None:
        """Detach the stream, keeping the staging unless the upload finished."""
        try:
            if not session.done:
                await session.upload.close()
        finally:
            self._active.discard(session.record.upload_id)

    async def get_upload(self, upload_id: str) -> tuple[UploadRecord, int]:
        record = await self._uploads.get_upload(check_upload_id(upload_id))
        staged = {u.upload_id: u.offset for u in await self._blobs.list_uploads()}
        return record, staged.get(upload_id, 0)

    async def cancel(self, upload_id: str) -> None:
        check_upload_id(upload_id)
        if upload_id in self._active:
            raise errors.Aborted(
                ErrorReason.UPLOAD_IN_PROGRESS,
                "a stream is writing this upload",
                {ErrorMetadataKey.UPLOAD_ID: upload_id},
            )
        await self._uploads.get_upload(upload_id)
        try:
            upload = await self._blobs.resume_upload(upload_id)
            await upload.cancel()
        except errors.NotFound:
            pass
        await self._uploads.delete_upload(upload_id)

    async def reclaim(self) -> int:
        """Expire uploads idle for the TTL: their rows here, their staging in the store.

        A row is touched each time its staging grows, so an expired row's bytes
        have been idle about as long and go in this round or the next. Staging
        whose row went some other way (a crash half way through) goes the same way.
        """
        expired = [u for u in await self._uploads.expired_uploads() if u not in self._active]
        for upload_id in expired:
            await self._uploads.delete_upload(upload_id)
        staged = await self._blobs.reclaim_uploads(self._settings.upload_ttl_s)
        return len({*expired, *(u.upload_id for u in staged)})

    async def reclaim_forever(self, interval_s: float = 60.0) -> None:
        while True:
            try:
                dropped = await self.reclaim()
                if dropped:
                    log.info("reclaimed uploads", extra={"count": dropped})
            except Exception:
                log.exception("reclaiming uploads failed")
            await asyncio.sleep(interval_s)

    # -- download -------------------------------------------------------------

    @asynccontextmanager
    async def download(
        self, digest: str, version: str, alias: str, offset: int, length: int, chunk_bytes: int
    ) -> AsyncIterator[Download]:
        """One download stream: a transfer slot, the blob's description and its
        chunks, all released when the stream ends however it ends."""
        with self._limits.download():
            download = await self._open_download(
                digest, version, alias, offset, length, chunk_bytes
            )
            async with aclosing(download.chunks):  # type: ignore[type-var]
                yield download

    async def _open_download(
        self, digest: str, version: str, alias: str, offset: int, length: int, chunk_bytes: int
    ) -> Download:
        if offset < 0:
            raise errors.OutOfRange(ErrorReason.OFFSET_OUT_OF_RANGE, "offset must not be negative")
        if length < 0:
            raise errors.InvalidArgument(
                ErrorReason.INVALID_LENGTH, "length must not be negative", "length"
            )
        if not 0 <= chunk_bytes <= MAX_CHUNK_BYTES:
            raise errors.InvalidArgument(
                ErrorReason.INVALID_CHUNK,
                f"chunk_bytes must be 0 to {MAX_CHUNK_BYTES}",
                "chunk_bytes",
            )
        resolved: VersionName | None = None
        media_type = ""
        if digest:
            check_digest(digest, "digest")
        else:
            mv = await self._target_version(version, alias)
            resolved = mv.name
            if mv.artifact is None:
                raise _no_artifact(mv)
            digest, media_type = mv.artifact.digest, mv.artifact.media_type
        blob = await self._blobs.stat(digest)
        if blob is None:
            raise errors.blob_not_found(digest)
        if offset > blob.size:
            raise errors.offset_out_of_range(offset, blob.size)
        end = blob.size if not length else min(blob.size, offset + length)
        chunks = self._paced(
            lambda at, size: self._blobs.open_reader(digest, at, end - at, size),
            offset,
            end,
            chunk_bytes or DEFAULT_DOWNLOAD_CHUNK,
        )
        return Download(blob, media_type, resolved, chunks)

    async def _paced(
        self,
        open_reader: Callable[[int, int], AsyncGenerator[bytes, None]],
        offset: int,
        end: int,
        preferred: int,
    ) -> AsyncIterator[tuple[int, bytes, int]]:
        """(offset, data, crc32c) from `offset` to `end`: small chunks until the
        client has taken `proven_bytes`, then `preferred` ones while the shared
        budget has room (see `transfers`)."""
        settings = self._limits.settings
        preferred = min(preferred, settings.large_chunk_bytes)
        size = min(preferred, settings.small_chunk_bytes)
        grant = 0
        prove_at = offset + settings.proven_bytes
        reader = open_reader(offset, size)
        try:
            while offset < end:
                data = await anext(reader, b"")
                if not data:
                    raise errors.blob_store_unavailable("a blob is shorter than recorded")
                piece = (offset, data, _crc32c(data))
                offset += len(data)
                del data  # the transport's copy is the one that waits for the client
                yield piece
                del piece
                if size < preferred and offset >= prove_at and offset < end:
                    if self._limits.take(preferred):
                        grant, size = preferred, preferred
                        await reader.aclose()
                        reader = open_reader(offset, size)
                    else:
                        prove_at = offset + settings.proven_bytes
        finally:
            await reader.aclose()
            if grant:
                self._limits.give_back(grant)

    async def stat(self, digest: str) -> BlobInfo:
        blob = await self._blobs.stat(check_digest(digest, "digest"))
        if blob is None:
            raise errors.blob_not_found(digest)
        return blob

    async def _target_version(self, version: str, alias: str) -> ModelVersion:
        if version:
            return await self._registry.get_version(parse_version_name(version, "version"))
        if alias:
            resolution = await self._registry.resolve_alias(parse_alias_name(alias, "alias"))
            return resolution.version
        raise errors.InvalidArgument(
            ErrorReason.INVALID_FIELD, "set one of digest, version or alias", "target"
        )


def _artifact(blob: BlobInfo, record: UploadRecord) -> Artifact:
    return Artifact(digest=blob.digest, size_bytes=blob.size, media_type=record.media_type)


def _no_artifact(mv: ModelVersion) -> errors.FailedPrecondition:
    if mv.state == VersionState.PENDING_UPLOAD:
        return errors.FailedPrecondition(
            ErrorReason.VERSION_NOT_READY,
            f"{mv.name} has no artifact yet (PENDING_UPLOAD)",
            {ErrorMetadataKey.RESOURCE: str(mv.name)},
        )
    return errors.FailedPrecondition(
        ErrorReason.NO_STORED_ARTIFACT,
        f"{mv.name} points at an external source ({mv.source_uri[:200]}), not a stored artifact",
        {ErrorMetadataKey.RESOURCE: str(mv.name)},
    )


def _chunk_error(
    reason: ErrorReason, message: str, session: UploadSession
) -> errors.InvalidArgument:
    err = errors.InvalidArgument(reason, message, "chunk")
    err.metadata[ErrorMetadataKey.EXPECTED_OFFSET] = str(session.received)
    err.metadata[ErrorMetadataKey.COMMITTED_OFFSET] = str(session.committed)
    err.metadata[ErrorMetadataKey.UPLOAD_ID] = session.record.upload_id
    return err
