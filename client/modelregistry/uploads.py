"""Uploading one blob over `ArtifactService.Upload`, resumably.

The file is read in a worker thread in large batches (CRC32C computed
there too) with one batch prefetched, so memory stays flat whatever the
size and the event loop only moves messages. The upload id is saved before
the first byte goes out; a broken stream is reopened with it and continues
from the server's committed offset, both within one run (retries with
backoff) and across runs (the state file).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from crc32c import crc32c

from .chunk_wire import encode_chunk
from .errors import InternalError, RegistryError, from_rpc_error
from .thread_jobs import wait_out
from .transport import RetryPolicy
from .upload_state import UploadState, UploadStateStore
from .v1 import artifact_service_pb2 as apb
from .v1 import resources_pb2 as pb
from .v1.error_reasons import ErrorMetadataKey, ErrorReason

if TYPE_CHECKING:
    from .v1.artifact_service_pb2_grpc import ArtifactServiceAsyncStub

MAX_CHUNK_BYTES = 4 * 1024 * 1024
DEFAULT_CHUNK_BYTES = 1024 * 1024
# Bytes read per thread hop: few hops per GB, yet a small, fixed footprint.
BATCH_BYTES = 8 * 1024 * 1024
# Streams may break many times over a multi-GB upload; retries reset on progress.
TRANSFER_RETRY = RetryPolicy(max_attempts=8, initial_backoff=0.2, max_backoff=5.0)

OnOffset = Callable[[int], None]
"""Called with the blob offset sent so far (it may step back after a resume)."""


@dataclass(frozen=True)
class BlobUpload:
    """What uploading one blob took."""

    blob: apb.Blob
    model_version: pb.ModelVersion | None
    already_existed: bool
    # Committed offset the server reported when this run first attached (0: from scratch).
    resumed_from: int
    bytes_sent: int


# A stream cut by the transport (server restart, reset connection) surfaces
# as one of these without a registry reason, depending on where it broke.
_TRANSPORT_CODES = (grpc.StatusCode.INTERNAL, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN)


def stream_broken(err: RegistryError) -> bool:
    """True when the stream failed in transit rather than by the server's answer."""
    return err.code == grpc.StatusCode.UNAVAILABLE or (
        not err.reason and err.code in _TRANSPORT_CODES
    )


def retry_delay(err: RegistryError, backoff: float) -> float:
    """How long to wait before another stream: what the server asked for
    (a full server says when to come back), or the backoff."""
    if err.reason == ErrorReason.TOO_MANY_TRANSFERS:
        asked = err.metadata.get(ErrorMetadataKey.RETRY_DELAY_MS, "")
        if asked.isdigit():
            return max(backoff, int(asked) / 1000)
    return backoff


def _retryable(err: RegistryError) -> bool:
    """Failures a fresh stream can get past; every other one is the caller's to see."""
    return (
        stream_broken(err)
        # The server runs as many transfers as it allows: later, there is room.
        or err.reason == ErrorReason.TOO_MANY_TRANSFERS
        # The server has not yet seen the old stream end.
        or err.reason == ErrorReason.UPLOAD_IN_PROGRESS
        # This side went quiet too long (a stalled disk): the server kept what it got.
        or err.reason == ErrorReason.UPLOAD_IDLE
        # Corrupted in transit: resend from the disk.
        or err.reason == ErrorReason.CHECKSUM_MISMATCH
        # Garbage-collected while the upload finished: upload it again.
        or err.reason == ErrorReason.BLOB_COLLECTED
    )


Batch = list[tuple[bytes, int]]
"""Serialized chunk messages (see `chunk_wire`) with their data lengths."""

UPLOAD_METHOD = "/modelregistry.v1.ArtifactService/Upload"


def _request_bytes(request: apb.UploadRequest | bytes) -> bytes:
    return request if type(request) is bytes else request.SerializeToString()  # type: ignore[union-attr]


def raw_uploads(channel: grpc.aio.Channel) -> Any:
    """Upload on `channel`, taking chunk messages already serialized."""
    return channel.stream_stream(
        UPLOAD_METHOD,
        request_serializer=_request_bytes,
        response_deserializer=apb.UploadResponse.FromString,
    )


def _read_batch(source: Path | bytes, fd: int | None, start: int, end: int, chunk: int) -> Batch:
    """Chunks from `start` up to BATCH_BYTES, as ready-to-send messages (runs in a thread)."""
    out: Batch = []
    offset = start
    stop = min(end, start + max(BATCH_BYTES, chunk))
    while offset < stop:
        n = min(chunk, stop - offset)
        if fd is None:
            assert isinstance(source, bytes)
            data = source[offset : offset + n]
        else:
            data = os.pread(fd, n, offset)
        if len(data) != n:
            what = source if isinstance(source, Path) else "data"
            raise OSError(f"{what}: file shrank while being pushed")
        crc = crc32c(data)
        out.append((encode_chunk(offset, data, crc), n))
        offset += n
    return out


async def _chunks(source: Path | bytes, start: int, end: int, chunk: int) -> AsyncIterator[Batch]:
    """Batches of chunk messages from `start` to `end`, the next one read while one is sent."""
    fd = os.open(source, os.O_RDONLY) if isinstance(source, Path) else None
    pending: asyncio.Future[Batch] | None = None
    try:
        offset = start
        if offset < end:
            pending = asyncio.ensure_future(
                asyncio.to_thread(_read_batch, source, fd, offset, end, chunk)
            )
        while pending is not None:
            batch = await asyncio.shield(pending)  # cancelled, the thread runs on
            pending = None
            offset += sum(n for _, n in batch)
            if offset < end:
                pending = asyncio.ensure_future(
                    asyncio.to_thread(_read_batch, source, fd, offset, end, chunk)
                )
            yield batch
    finally:
        try:
            if pending is not None:
                # The thread cannot be interrupted: let it finish before closing its fd.
                await wait_out((pending,))
        finally:
            if fd is not None:
                os.close(fd)


class BlobUploader:
    """Uploads one blob, retrying broken streams and resuming from committed offsets."""

    def __init__(
        self,
        stub: ArtifactServiceAsyncStub,
        *,
        target: str,
        states: UploadStateStore | None,
        chunk_size: int = DEFAULT_CHUNK_BYTES,
        retry: RetryPolicy = TRANSFER_RETRY,
        channel: grpc.aio.Channel | None = None,
    ) -> None:
        """With `channel`, chunks go out serialized by hand (see `chunk_wire`)."""
        if not 0 < chunk_size <= MAX_CHUNK_BYTES:
            raise ValueError(f"chunk_size must be 1 to {MAX_CHUNK_BYTES} bytes")
        self._stub = stub
        self._upload: Any = raw_uploads(channel) if channel is not None else None
        self._target = target
        self._states = states
        self._chunk = chunk_size
        self._retry = retry

    async def upload(
        self,
        source: Path | bytes,
        digest: str,
        size: int,
        *,
        version: str = "",
        media_type: str = "",
        on_offset: OnOffset | None = None,
        model: str = "",
    ) -> BlobUpload:
        """Upload `source` (a file, or bytes) of `size` bytes and `digest`.

        With `version` this is the version's manifest: such uploads are small
        and not remembered in the state files (the version would refuse a
        second artifact anyway). `model` (`models/{model}`): the model a blob
        upload is for; its size counts against that model's storage quota.
        """
        states = self._states if not version else None
        saved = states.load(self._target, digest, size) if states else None
        upload_id = saved.upload_id if saved else ""
        resumed_from: int | None = None
        sent = 0
        attempt = 1
        while True:
            stream = _Stream(source, digest, size, version, media_type, self._chunk, on_offset)
            stream.model = model
            try:
                done = await stream.run(
                    self._upload or self._stub.Upload,
                    upload_id,
                    self._remember(states, digest, size),
                )
            except grpc.aio.AioRpcError as rpc_err:
                err = from_rpc_error(rpc_err)
                sent += stream.sent
                if resumed_from is None and stream.started_at is not None:
                    resumed_from = stream.started_at
                if upload_id and err.reason == ErrorReason.UPLOAD_NOT_FOUND:
                    # Expired, cancelled or already finished: begin afresh.
                    if states:
                        states.clear(self._target, digest)
                    upload_id = ""
                    continue
                upload_id = stream.upload_id or upload_id
                if stream.progressed:
                    attempt = 1
                if not _retryable(err) or attempt >= self._retry.max_attempts:
                    if states and not _retryable(err):
                        # The server dropped the upload (digest or size mismatch...).
                        states.clear(self._target, digest)
                    raise err from rpc_err
                await asyncio.sleep(retry_delay(err, self._retry.backoff(attempt)))
                attempt += 1
                continue
            if states:
                states.clear(self._target, digest)
            sent += stream.sent
            if resumed_from is None:
                resumed_from = stream.started_at or 0
            return BlobUpload(
                blob=done.blob,
                model_version=done.model_version if done.HasField("model_version") else None,
                already_existed=stream.already_existed,
                resumed_from=0 if stream.already_existed else resumed_from,
                bytes_sent=sent,
            )

    def _remember(
        self, states: UploadStateStore | None, digest: str, size: int
    ) -> Callable[[str], None]:
        def save(upload_id: str) -> None:
            if states:
                states.save(UploadState(self._target, digest, size, upload_id))

        return save


class _Stream:
    """One Upload call: start, chunks from the committed offset, finish."""

    def __init__(
        self,
        source: Path | bytes,
        digest: str,
        size: int,
        version: str,
        media_type: str,
        chunk: int,
        on_offset: OnOffset | None,
    ) -> None:
        self.source, self.digest, self.size = source, digest, size
        self.version, self.media_type, self.chunk = version, media_type, chunk
        self.on_offset = on_offset
        self.model = ""
        self.upload_id = ""
        self.started_at: int | None = None
        self.already_existed = False
        self.sent = 0
        self.progressed = False

    async def run(
        self, upload: Any, upload_id: str, save: Callable[[str], None]
    ) -> apb.UploadFinished:
        call: Any = upload()  # write/read style
        reader: asyncio.Task[apb.UploadFinished] | None = None
        try:
            start = apb.UploadStart(
                upload_id=upload_id,
                size_bytes=self.size,
                digest=self.digest,
                version=self.version,
                media_type=self.media_type,
                model=self.model,
            )
            await call.write(apb.UploadRequest(start=start))
            started = (await self._read(call)).started
            self.started_at = started.committed_offset
            if started.already_exists:
                self.already_existed = True
                await call.done_writing()
                return await self._finished(call)
            self.upload_id = started.upload_id
            save(self.upload_id)
            chunk = min(self.chunk, started.max_chunk_bytes or MAX_CHUNK_BYTES)
            reader = asyncio.create_task(self._finished(call))
            offset = started.committed_offset
            if self.on_offset:
                self.on_offset(offset)
            async for batch in _chunks(self.source, offset, self.size, chunk):
                for request, n in batch:
                    if reader.done():
                        return await reader  # the server ended the call: its status says why
                    await call.write(request)
                    self.sent += n
                    offset += n
                    if self.on_offset:
                        self.on_offset(offset)
            await call.write(apb.UploadRequest(finish=apb.UploadFinish(digest=self.digest)))
            await call.done_writing()
            return await reader
        except grpc.aio.AioRpcError:
            if reader is not None and reader.done() and not reader.cancelled():
                reader.exception()  # the same status; retrieved so it is not reported twice
            raise
        except asyncio.InvalidStateError:
            # A write after the server closed the call with OK: its answer is authoritative.
            if reader is not None:
                return await reader
            await self._read(call)  # raises the call's error status
            raise
        finally:
            if reader is not None and not reader.done():
                reader.cancel()
            call.cancel()

    async def _read(self, call: Any) -> apb.UploadResponse:
        message = await call.read()
        if message is grpc.aio.EOF:  # type: ignore[attr-defined]
            raise InternalError(
                grpc.StatusCode.INTERNAL,
                ErrorReason.PROTOCOL_VIOLATION,
                "upload stream ended early",
            )
        assert isinstance(message, apb.UploadResponse)
        return message

    async def _finished(self, call: Any) -> apb.UploadFinished:
        while True:
            message = await self._read(call)
            kind = message.WhichOneof("kind")
            if kind == "finished":
                return message.finished
            if kind == "progress":
                self.progressed = True
