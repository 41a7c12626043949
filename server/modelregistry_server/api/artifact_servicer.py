"""ArtifactService over gRPC: the stream protocol around the data-plane use cases."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import empty_pb2
from modelregistry.v1 import artifact_service_pb2 as apb
from modelregistry.v1 import artifact_service_pb2_grpc as apb_grpc
from modelregistry.v1.error_reasons import ErrorReason

from ..domain import errors
from ..observability import metrics
from ..service.artifacts import MAX_CHUNK_BYTES, Artifacts, Published, UploadSession
from ..service.gc import GarbageCollector
from . import convert, gc_convert
from .chunk_wire import WireChunk, download_response, encode_chunk, upload_request

Ctx = Any  # grpc.aio.ServicerContext


def _protocol_violation(message: str) -> errors.InvalidArgument:
    return errors.InvalidArgument(ErrorReason.PROTOCOL_VIOLATION, message, "kind")


def _finished(published: Published) -> apb.UploadResponse:
    finished = apb.UploadFinished(
        blob=apb.Blob(digest=published.blob.digest, size_bytes=published.blob.size)
    )
    if published.version is not None:
        finished.model_version.CopyFrom(convert.version_to_pb(published.version))
    return apb.UploadResponse(finished=finished)


def _progress(committed: int) -> apb.UploadResponse:
    return apb.UploadResponse(progress=apb.UploadProgress(committed_offset=committed))


class ArtifactServicer(apb_grpc.ArtifactServiceServicer):
    def __init__(self, artifacts: Artifacts, collector: GarbageCollector) -> None:
        self._artifacts = artifacts
        self._collector = collector

    async def Upload(
        self, request_iterator: AsyncIterator[apb.UploadRequest | WireChunk], context: Ctx
    ) -> AsyncIterator[apb.UploadResponse]:
        requests = aiter(request_iterator)
        first = await anext(requests, None)
        if not isinstance(first, apb.UploadRequest) or first.WhichOneof("kind") != "start":
            raise _protocol_violation("the first message of an upload must be `start`")
        # The slot is taken once `start` is read: a client waiting for
        # `started` then gets a clean RESOURCE_EXHAUSTED when none is free.
        with self._artifacts.upload_stream():
            async for response in self._upload(first.start, requests):
                yield response

    async def _upload(
        self, start: apb.UploadStart, requests: AsyncIterator[apb.UploadRequest | WireChunk]
    ) -> AsyncIterator[apb.UploadResponse]:
        result = await self._artifacts.start(
            start.upload_id,
            start.size_bytes,
            start.digest,
            start.version,
            start.media_type,
            start.model,
        )
        if isinstance(result, Published):
            yield apb.UploadResponse(
                started=apb.UploadStarted(
                    committed_offset=result.blob.size,
                    already_exists=True,
                    max_chunk_bytes=MAX_CHUNK_BYTES,
                )
            )
            yield _finished(result)
            return
        session: UploadSession = result
        try:
            started = apb.UploadStarted(
                upload_id=session.record.upload_id,
                committed_offset=session.committed,
                max_chunk_bytes=MAX_CHUNK_BYTES,
            )
            started.expire_time.CopyFrom(convert.timestamp(session.record.expire_time_us))
            yield apb.UploadResponse(started=started)
            # No reference to a request outlives its handling: a client that
            # goes quiet must not pin its last (up to 4 MiB) chunk here.
            while True:
                pending = asyncio.ensure_future(anext(requests, None))
                try:
                    if session.received > session.committed:
                        # Quiet with bytes buffered: make them durable and say
                        # so, rather than hold them while the client is away.
                        await asyncio.wait({pending}, timeout=self._artifacts.quiet_flush_s)
                        if not pending.done():
                            yield _progress(await self._artifacts.pause(session))
                    try:
                        request = await asyncio.wait_for(pending, self._artifacts.idle_timeout_s)
                    except TimeoutError:
                        raise await self._artifacts.idle(session) from None
                finally:
                    pending.cancel()
                del pending
                if request is None:
                    break
                if isinstance(request, WireChunk):
                    # Staged as a view of the received message, never copied.
                    offset, data, crc = request.offset, request.data, request.crc32c
                    del request
                    metrics.uploaded(len(data))
                    committed = await self._artifacts.write_chunk(session, offset, data, crc)
                    del data
                    if committed is not None:
                        yield _progress(committed)
                    continue
                kind = request.WhichOneof("kind")
                if kind == "finish":
                    published = await self._artifacts.finish(session, request.finish.digest)
                    yield _finished(published)
                    return
                else:
                    raise _protocol_violation("after `start` send `chunk`s and one `finish`")
            yield _progress(await self._artifacts.pause(session))
        finally:
            await self._artifacts.release(session)

    async def GetUpload(self, request: apb.GetUploadRequest, context: Ctx) -> apb.UploadStatus:
        record, committed = await self._artifacts.get_upload(request.upload_id)
        status = apb.UploadStatus(
            upload_id=record.upload_id,
            committed_offset=committed,
            size_bytes=record.size_bytes,
            digest=record.digest or "",
            version=str(record.version) if record.version else "",
        )
        status.expire_time.CopyFrom(convert.timestamp(record.expire_time_us))
        return status

    async def CancelUpload(self, request: apb.CancelUploadRequest, context: Ctx) -> empty_pb2.Empty:
        await self._artifacts.cancel(request.upload_id)
        return empty_pb2.Empty()

    async def Download(  # type: ignore[override]  # chunks go out as bytes, see add_to_server
        self, request: apb.DownloadRequest, context: Ctx
    ) -> AsyncIterator[apb.DownloadResponse | bytes]:
        target = request.WhichOneof("target") or ""
        async with self._artifacts.download(
            request.digest if target == "digest" else "",
            request.version if target == "version" else "",
            request.alias if target == "alias" else "",
            request.offset,
            request.length,
            request.chunk_bytes,
        ) as download:
            yield apb.DownloadResponse(
                header=apb.DownloadHeader(
                    blob=apb.Blob(digest=download.blob.digest, size_bytes=download.blob.size),
                    media_type=download.media_type,
                    version=str(download.version) if download.version else "",
                )
            )
            async for offset, data, crc in download.chunks:
                metrics.downloaded(len(data))
                message = encode_chunk(offset, data, crc)
                del data  # while the client is slow, only the message waits
                yield message

    async def GetBlob(self, request: apb.GetBlobRequest, context: Ctx) -> apb.Blob:
        blob = await self._artifacts.stat(request.digest)
        return apb.Blob(digest=blob.digest, size_bytes=blob.size)

    async def CollectGarbage(
        self, request: apb.CollectGarbageRequest, context: Ctx
    ) -> apb.CollectGarbageResponse:
        report = await self._collector.collect(request.dry_run, gc_convert.grace_of(request))
        return gc_convert.report_to_pb(report)


def add_to_server(servicer: ArtifactServicer, server: grpc.aio.Server) -> None:
    """Register the service as the generated code would, except that Upload
    and Download read and write chunk messages at the wire level (see
    `chunk_wire`)."""
    service = "modelregistry.v1.ArtifactService"
    handlers = {
        "Upload": grpc.stream_stream_rpc_method_handler(
            servicer.Upload,
            request_deserializer=upload_request,
            response_serializer=apb.UploadResponse.SerializeToString,
        ),
        "GetUpload": grpc.unary_unary_rpc_method_handler(
            servicer.GetUpload,
            request_deserializer=apb.GetUploadRequest.FromString,
            response_serializer=apb.UploadStatus.SerializeToString,
        ),
        "CancelUpload": grpc.unary_unary_rpc_method_handler(
            servicer.CancelUpload,
            request_deserializer=apb.CancelUploadRequest.FromString,
            response_serializer=empty_pb2.Empty.SerializeToString,
        ),
        "Download": grpc.unary_stream_rpc_method_handler(
            servicer.Download,
            request_deserializer=apb.DownloadRequest.FromString,
            response_serializer=download_response,
        ),
        "GetBlob": grpc.unary_unary_rpc_method_handler(
            servicer.GetBlob,
            request_deserializer=apb.GetBlobRequest.FromString,
            response_serializer=apb.Blob.SerializeToString,
        ),
        "CollectGarbage": grpc.unary_unary_rpc_method_handler(
            servicer.CollectGarbage,
            request_deserializer=apb.CollectGarbageRequest.FromString,
            response_serializer=apb.CollectGarbageResponse.SerializeToString,
        ),
    }
    # Every method of the service has its handler: one added to the proto
    # and not here fails at start, not as UNIMPLEMENTED in production.
    declared = apb.DESCRIPTOR.services_by_name["ArtifactService"].methods_by_name
    missing = set(declared) - set(handlers)
    if missing:
        raise RuntimeError(f"ArtifactService methods without a handler: {sorted(missing)}")
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    server.add_registered_method_handlers(service, handlers)  # type: ignore[attr-defined]
