"""Streams nobody reads cost the server little: a client that asks for a large
blob in 4 MiB chunks and reads only the header pins small chunks, not
several large ones, in a real `modelreg serve` process."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import google_crc32c
import grpc
from modelregistry.v1 import artifact_service_pb2 as apb
from modelregistry.v1 import artifact_service_pb2_grpc
from support.processes import running
from support.procfs import status_kb

MIB = 1024 * 1024
STALLED = 40


def rss_mb(pid: int) -> float:
    return status_kb(pid, "VmRSS") / 1024


async def _upload(address: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()

    async def requests() -> AsyncIterator[apb.UploadRequest]:
        yield apb.UploadRequest(start=apb.UploadStart(size_bytes=len(data), digest=digest))
        for offset in range(0, len(data), 4 * MIB):
            piece = data[offset : offset + 4 * MIB]
            crc = google_crc32c.value(piece)
            yield apb.UploadRequest(chunk=apb.UploadChunk(offset=offset, data=piece, crc32c=crc))
        yield apb.UploadRequest(finish=apb.UploadFinish(digest=digest))

    async with grpc.aio.insecure_channel(address) as ch:
        async for _ in artifact_service_pb2_grpc.ArtifactServiceStub(ch).Upload(requests()):
            pass
    return digest


async def test_stalled_downloads_pin_small_chunks_only(tmp_path: Path) -> None:
    with running(tmp_path / "data") as server:
        digest = await _upload(server.address, os.urandom(64 * MIB))
        before = rss_mb(server.pid)
        channels: list[grpc.aio.Channel] = []
        calls: list[Any] = []
        options = [
            ("grpc.max_receive_message_length", 16 * MIB),
            ("grpc.use_local_subchannel_pool", 1),
        ]
        try:
            for _ in range(STALLED):
                ch = grpc.aio.insecure_channel(server.address, options=options)
                channels.append(ch)
                call = artifact_service_pb2_grpc.ArtifactServiceStub(ch).Download(
                    apb.DownloadRequest(digest=digest, chunk_bytes=4 * MIB)
                )
                calls.append(call)
                first = await call.read()
                assert isinstance(first, apb.DownloadResponse) and first.HasField("header")
            await asyncio.sleep(3)
            grown = rss_mb(server.pid) - before
        finally:
            for call in calls:
                call.cancel()
            for ch in channels:
                await ch.close(None)
        # Each stalled stream used to pin about 25 MB (5 copies of a 4 MiB chunk).
        assert grown < 40, f"{STALLED} stalled downloads added {grown:.0f} MB"
