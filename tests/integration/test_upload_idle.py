"""An upload stream that goes quiet is ended after the idle timeout with a
clear status, keeping what it sent; a new stream resumes it."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import google_crc32c
import grpc
import pytest
from modelregistry.v1 import artifact_service_pb2 as apb
from modelregistry.v1 import artifact_service_pb2_grpc
from modelregistry.v1.error_reasons import ErrorMetadataKey, ErrorReason
from modelregistry_server.config import ServerConfig
from support.grpc_errors import error_info
from support.in_process import serving

pytestmark = pytest.mark.timeout(60)


def _chunk(offset: int, data: bytes) -> apb.UploadRequest:
    crc = google_crc32c.value(data)
    return apb.UploadRequest(chunk=apb.UploadChunk(offset=offset, data=data, crc32c=crc))


async def test_quiet_upload_is_ended_and_resumes(tmp_path: Path) -> None:
    config = ServerConfig(
        listen="127.0.0.1:0", data_dir=tmp_path / "data", upload_idle_timeout_s=0.5
    )
    data = os.urandom(300_000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    async with (
        serving(config) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        stub = artifact_service_pb2_grpc.ArtifactServiceStub(channel)
        quiet = asyncio.Event()

        async def stalls() -> AsyncIterator[apb.UploadRequest]:
            yield apb.UploadRequest(start=apb.UploadStart(size_bytes=len(data)))
            yield _chunk(0, data[:100_000])
            await quiet.wait()  # never set: quiet, not closed

        call = stub.Upload(stalls())
        started = await call.read()
        assert isinstance(started, apb.UploadResponse)
        upload_id = started.started.upload_id
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            while True:
                if await call.read() is grpc.aio.EOF:  # type: ignore[attr-defined]
                    break
        info = error_info(exc.value)
        assert exc.value.code() == grpc.StatusCode.ABORTED
        assert info.reason == ErrorReason.UPLOAD_IDLE
        assert info.metadata[ErrorMetadataKey.COMMITTED_OFFSET] == "100000"
        status = await stub.GetUpload(apb.GetUploadRequest(upload_id=upload_id))
        assert status.committed_offset == 100_000, "what it sent was kept"

        async def resumes() -> AsyncIterator[apb.UploadRequest]:
            yield apb.UploadRequest(start=apb.UploadStart(upload_id=upload_id))
            yield _chunk(100_000, data[100_000:])
            yield apb.UploadRequest(finish=apb.UploadFinish(digest=digest))

        answers = [r async for r in stub.Upload(resumes())]
        assert answers[0].started.committed_offset == 100_000
        assert answers[-1].finished.blob.digest == digest
