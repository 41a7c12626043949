"""Downloading blobs over `ArtifactService.Download`, verified and resumable.

A file is received into a partial file named after its digest: every chunk's
CRC32C and offset are checked before it is written, the sha256 of the whole
is checked at the end, and only a verified file is ever renamed into place
(by the caller). An interrupted download resumes from the partial file's
verified prefix (its length, or what its `.prefix` note says after a
download in parallel ranges, see `ranged_downloads`), within one run
(retries when a stream breaks) and across runs. Each chunk's CRC32C is
checked as it arrives; checked chunks are written and hashed in large
batches, by two worker threads at once, one batch in flight while the next
is received, so memory stays flat and the event loop only moves messages.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from crc32c import crc32c

from .chunk_wire import WireChunk, download_response
from .errors import DataLossError, RegistryError, from_rpc_error
from .manifest import DIGEST_PREFIX, HASH_READ_BYTES
from .thread_jobs import on_file, wait_out
from .transport import RetryPolicy
from .uploads import TRANSFER_RETRY, retry_delay, stream_broken
from .v1 import artifact_service_pb2 as apb
from .v1.error_reasons import ErrorReason
from .writeback import start_writeback

if TYPE_CHECKING:
    from .v1.artifact_service_pb2_grpc import ArtifactServiceAsyncStub

DEFAULT_DOWNLOAD_CHUNK = 1024 * 1024
BATCH_BYTES = 16 * 1024 * 1024

OnOffset = Callable[[int], None]
"""Called with the blob offset received so far."""


@dataclass(frozen=True)
class BlobDownload:
    """What downloading one blob took."""

    # Bytes already in the partial file when this run began (0: from scratch).
    resumed_from: int
    bytes_received: int


def data_loss(reason: ErrorReason, message: str, **metadata: str) -> DataLossError:
    """The error for data that failed verification on this side of the wire."""
    return DataLossError(grpc.StatusCode.DATA_LOSS, reason, message, metadata)


Piece = tuple[int, bytes | memoryview, int]
"""(offset, data, crc32c) of a received chunk: `data` is a view of the
received message (see `chunk_wire`), or bytes from a parsed message."""

DOWNLOAD_METHOD = "/modelregistry.v1.ArtifactService/Download"


def _piece(message: WireChunk | apb.DownloadResponse) -> Piece | None:
    """The chunk a Download message carries; None for the header."""
    if isinstance(message, WireChunk):
        return message.offset, message.data, message.crc32c
    if message.WhichOneof("kind") != "chunk":
        return None
    return message.chunk.offset, message.chunk.data, message.chunk.crc32c


def _crc_ok(data: bytes | memoryview, crc: int) -> bool:
    return crc32c(data) == crc


def raw_downloads(channel: grpc.aio.Channel) -> Any:
    """Download on `channel` with chunks decoded at the wire level, so a
    received chunk is never copied into a message (see `chunk_wire`)."""
    return channel.unary_stream(
        DOWNLOAD_METHOD,
        request_serializer=apb.DownloadRequest.SerializeToString,
        response_deserializer=download_response,
    )


def _hash_prefix(fd: int, length: int) -> Any:
    hasher = hashlib.sha256()
    offset = 0
    while offset < length:
        data = os.pread(fd, min(HASH_READ_BYTES, length - offset), offset)
        if not data:
            raise OSError("partial file shrank while being read")
        hasher.update(data)
        offset += len(data)
    return hasher


class _FileSink:
    """Writes checked chunks to a file from `pos` on and hashes them (unless
    `hasher` is None), a batch at a time in two worker threads."""

    def __init__(self, fd: int, hasher: Any, pos: int, digest: str) -> None:
        self.fd, self.hasher, self.digest = fd, hasher, digest
        # Bytes verified and written; only read once the worker has settled.
        self.pos = pos
        self.received = pos
        self._batch: list[Piece] = []
        self._batch_bytes = 0
        self._pending: asyncio.Future[None] | None = None
        # Called (on the event loop) each time a batch has been written.
        self.on_written: Callable[[], None] | None = None

    async def add(self, piece: Piece) -> None:
        offset, data, crc = piece
        if offset != self.received:
            raise data_loss(
                ErrorReason.UNEXPECTED_OFFSET,
                f"server sent offset {offset} of {self.digest}, expected {self.received}",
            )
        # Checked here, while gRPC's copy of it is still in the CPU's cache;
        # the batch then goes to disk and into the hash at the same time.
        if not _crc_ok(data, crc):
            raise data_loss(
                ErrorReason.CHECKSUM_MISMATCH,
                f"chunk at offset {offset} of {self.digest} failed its CRC32C check",
                offset=str(offset),
            )
        self._batch.append(piece)
        self._batch_bytes += len(data)
        self.received += len(data)
        if self._batch_bytes >= BATCH_BYTES:
            await self.flush(wait=False)

    async def flush(self, *, wait: bool = True) -> None:
        await self.settle()
        batch, self._batch, self._batch_bytes = self._batch, [], 0
        if batch:
            self._pending = asyncio.ensure_future(self._store(batch))
        if wait:
            await self.settle()

    async def settle(self) -> None:
        """Wait for the batch in flight (shielded: the threads run on
        regardless, and it stays in flight for `abandon` until they end)."""
        pending = self._pending
        if pending is not None:
            await asyncio.shield(pending)
            self._pending = None
            if self.on_written is not None:
                self.on_written()

    async def abandon(self) -> None:
        """Drop what was received but not written; keep what was. Waits for
        the batch in flight even when cancelled meanwhile (see
        `thread_jobs`): the caller closes the file next."""
        self._batch, self._batch_bytes = [], 0
        pending, self._pending = self._pending, None
        try:
            if pending is not None:
                await wait_out((pending,))
        finally:
            self.received = self.pos

    async def _store(self, batch: list[Piece]) -> None:
        """Write `batch` and hash it in two threads at once: hashing is what
        bounds a single stream, and the write need not wait for it."""
        if self.hasher is None:
            await asyncio.to_thread(self._write, batch)
            return
        written = asyncio.ensure_future(asyncio.to_thread(self._write, batch))
        hashed = asyncio.ensure_future(asyncio.to_thread(_hash_batch, self.hasher, batch))
        await asyncio.gather(written, hashed, return_exceptions=True)
        written.result()
        hashed.result()

    def _write(self, batch: list[Piece]) -> None:
        start = self.pos
        for _, block, _ in batch:
            view = memoryview(block)
            written = 0
            while written < len(block):
                written += os.pwrite(self.fd, view[written:], self.pos + written)
            self.pos += len(block)
        # On its way to disk while the next batch arrives (see `writeback`).
        start_writeback(self.fd, start, self.pos - start)


def _hash_batch(hasher: Any, batch: list[Piece]) -> None:
    for _, block, _ in batch:
        hasher.update(block)


PREFIX_SUFFIX = ".prefix"


def resume_point(fd: int, partial: Path, size: int) -> int:
    """Bytes of `partial` (open as `fd`) a download may continue after: its
    length, or less when a `.prefix` note says only that much is contiguous
    (a download in parallel ranges leaves holes past it)."""
    have = os.fstat(fd).st_size
    note = partial.with_name(partial.name + PREFIX_SUFFIX)
    try:
        text = note.read_text().strip()
    except FileNotFoundError:
        text = None
    if text is not None:
        have = min(have, int(text)) if text.isdigit() else 0
    if have > size:
        have = 0
    if have != os.fstat(fd).st_size:
        os.ftruncate(fd, have)
    if text is not None:
        note.unlink(missing_ok=True)
    return have


class BlobDownloader:
    """Downloads blobs with one stream each (or several ranges in parallel,
    see `ranged_downloads`), retrying broken streams where they stopped.

    With `channel`, chunks are decoded at the wire level (see `chunk_wire`);
    without, through `stub` as parsed messages.
    """

    def __init__(
        self,
        stub: ArtifactServiceAsyncStub,
        *,
        chunk_size: int = DEFAULT_DOWNLOAD_CHUNK,
        retry: RetryPolicy = TRANSFER_RETRY,
        channel: grpc.aio.Channel | None = None,
    ) -> None:
        self._stub = stub
        self._chunk = chunk_size
        self._retry = retry
        self._download: Any = raw_downloads(channel) if channel is not None else stub.Download

    @property
    def retry(self) -> RetryPolicy:
        return self._retry

    async def retrying(self, attempt: int, rpc_err: grpc.aio.AioRpcError) -> RegistryError | None:
        """Sleep and return None if the failure is worth another stream, else the error."""
        err = from_rpc_error(rpc_err)
        full = err.reason == ErrorReason.TOO_MANY_TRANSFERS
        if not (stream_broken(err) or full) or attempt >= self._retry.max_attempts:
            return err
        await asyncio.sleep(retry_delay(err, self._retry.backoff(attempt)))
        return None

    async def fetch(self, **target: str) -> tuple[apb.DownloadHeader, bytes]:
        """A small blob (a manifest) in memory, with every chunk and the digest checked.

        `target` is one of `digest=`, `version=` or `alias=`.
        """
        attempt = 1
        while True:
            try:
                return await self._fetch_once(target)
            except grpc.aio.AioRpcError as rpc_err:
                if (err := await self.retrying(attempt, rpc_err)) is not None:
                    raise err from rpc_err
                attempt += 1

    async def _fetch_once(self, target: dict[str, str]) -> tuple[apb.DownloadHeader, bytes]:
        header: apb.DownloadHeader | None = None
        body = bytearray()
        request = apb.DownloadRequest(chunk_bytes=self._chunk, **target)  # type: ignore[arg-type]
        async for message in self._download(request):
            piece = _piece(message)
            if piece is None:
                header = message.header
                continue
            offset, data, crc = piece
            if offset != len(body) or not _crc_ok(data, crc):
                raise data_loss(ErrorReason.CHECKSUM_MISMATCH, f"bad chunk at offset {offset}")
            body += data
        if header is None:
            raise data_loss(ErrorReason.PROTOCOL_VIOLATION, "download stream carried no header")
        digest = DIGEST_PREFIX + hashlib.sha256(body).hexdigest()
        if len(body) != header.blob.size_bytes or digest != header.blob.digest:
            raise data_loss(
                ErrorReason.DIGEST_MISMATCH,
                f"received {len(body)} bytes hashing to {digest}, "
                f"expected {header.blob.size_bytes} bytes of {header.blob.digest}",
            )
        return header, bytes(body)

    async def to_file(
        self, digest: str, size: int, partial: Path, on_offset: OnOffset | None = None
    ) -> BlobDownload:
        """Complete `partial` to blob `digest` of `size` bytes, synced to disk.

        Resumes from the partial file's verified prefix. On a digest mismatch
        the partial file is deleted (it cannot be trusted) and DataLossError raised.
        """
        await asyncio.to_thread(partial.parent.mkdir, parents=True, exist_ok=True)
        fd = os.open(partial, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            have = await on_file(resume_point, fd, partial, size)
            hasher = await on_file(_hash_prefix, fd, have)
            sink = _FileSink(fd, hasher, have, digest)
            await self.stream_range(sink, digest, size, size, on_offset)
            await on_file(os.fsync, fd)
        finally:
            os.close(fd)
        await check_digest(hasher, digest, partial)
        return BlobDownload(resumed_from=have, bytes_received=size - have)

    async def stream_range(
        self, sink: _FileSink, digest: str, size: int, end: int, on_offset: OnOffset | None
    ) -> None:
        """Fill `sink` from its position up to `end` with bytes of blob `digest`,
        opening another stream where one breaks, as the retry policy allows."""
        attempt = 1
        while True:
            progressed_from = sink.pos
            try:
                await self._stream_into(sink, digest, size, end, on_offset)
                break
            except grpc.aio.AioRpcError as rpc_err:
                await sink.abandon()
                if sink.pos > progressed_from:
                    attempt = 1
                if (err := await self.retrying(attempt, rpc_err)) is not None:
                    raise err from rpc_err
                attempt += 1
        if sink.pos != end:
            raise data_loss(ErrorReason.SIZE_MISMATCH, f"{digest}: got {sink.pos} of {end} bytes")

    async def _stream_into(
        self, sink: _FileSink, digest: str, size: int, end: int, on_offset: OnOffset | None
    ) -> None:
        request = apb.DownloadRequest(
            digest=digest,
            offset=sink.pos,
            length=end - sink.pos if end < size else 0,
            chunk_bytes=self._chunk,
        )
        try:
            async for message in self._download(request):
                piece = _piece(message)
                if piece is None:
                    blob = message.header.blob
                    if blob.digest != digest or blob.size_bytes != size:
                        raise data_loss(
                            ErrorReason.SIZE_MISMATCH,
                            f"server describes {blob.digest} as {blob.size_bytes} bytes, "
                            f"the manifest says {size}",
                        )
                    continue
                del message
                await sink.add(piece)
                del piece
                if on_offset:
                    on_offset(sink.received)
            await sink.flush()
        except BaseException:
            await sink.abandon()
            raise


async def check_digest(hasher: Any, digest: str, partial: Path) -> None:
    """DataLossError, and the partial file deleted, unless the bytes hash to `digest`."""
    actual = DIGEST_PREFIX + hasher.hexdigest()
    if actual != digest:
        await asyncio.to_thread(partial.unlink, missing_ok=True)
        raise data_loss(
            ErrorReason.DIGEST_MISMATCH,
            f"downloaded data hashes to {actual}, expected {digest}; partial file discarded",
            digest=digest,
        )
