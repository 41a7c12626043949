"""Artifacts through a `modelreg serve` process: a SIGKILL mid-upload loses
nothing acknowledged, and a large transfer round-trips with flat server memory."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import google_crc32c
import grpc
import pytest
from modelregistry.v1 import artifact_service_pb2 as apb
from modelregistry.v1 import artifact_service_pb2_grpc
from support.moto import s3_env
from support.processes import ServeProcess

if TYPE_CHECKING:
    from modelregistry.v1.artifact_service_pb2_grpc import ArtifactServiceAsyncStub

MIB = 1024 * 1024
CHUNK = MIB
# The "1 GiB round trip" of the data-plane contract; lower it locally with
# MODELREG_TEST_BIG_BYTES to iterate faster.
BIG = int(os.environ.get("MODELREG_TEST_BIG_BYTES", str(1024 * MIB)))
# The warm-up is long enough for the S3 store's segment pipeline to reach
# its full depth (a 64 MiB one did not always, and the step then showed as growth).
WARM = BIG // 4
RSS_LIMIT_KB = 200 * 1024
# Growth allowed from the warm-up transfer to the 4x larger one: about 8 MB
# is measured on either store; memory that creeps with the data (glibc
# arenas keeping 16 MiB S3 segments, 44-83 MB on 1 GiB) fails it.
FLAT_KB = 24 * 1024


@pytest.fixture(params=["local", "s3"])
def server(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ServeProcess]:
    """`modelreg serve` with its blobs on local disk, or in S3 (a moto server)."""
    extra: list[str] = []
    if request.param == "s3":
        endpoint = str(request.getfixturevalue("moto_endpoint"))
        s3_env(monkeypatch, tmp_path)  # the child inherits these
        import boto3

        bucket = f"big-{uuid.uuid4().hex[:8]}"
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=bucket)
        extra = ["--blob-store", f"s3://{bucket}/registry", "--s3-endpoint-url", endpoint]
    srv = ServeProcess(tmp_path / "data", *extra)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def piece(seed: int, offset: int, size: int) -> bytes:
    """Deterministic content, generated per chunk so no test holds a whole blob."""
    return random.Random(seed * 1_000_003 + offset).randbytes(size)


def chunk_request(seed: int, offset: int, size: int) -> apb.UploadRequest:
    data = piece(seed, offset, size)
    return apb.UploadRequest(
        chunk=apb.UploadChunk(offset=offset, data=data, crc32c=google_crc32c.value(data))
    )


def expected_digest(seed: int, total: int) -> str:
    h = hashlib.sha256()
    for offset in range(0, total, CHUNK):
        h.update(piece(seed, offset, min(CHUNK, total - offset)))
    return "sha256:" + h.hexdigest()


async def test_sigkill_mid_upload_loses_nothing_acknowledged(tmp_path: Path) -> None:
    total, seed = 48 * MIB, 7
    srv = ServeProcess(tmp_path / "data")
    srv.start()
    try:
        acknowledged = 0
        upload_id = ""
        async with grpc.aio.insecure_channel(srv.address) as ch:
            stub = artifact_service_pb2_grpc.ArtifactServiceStub(ch)
            stream: Any = stub.Upload()  # type: ignore[call-arg]
            await stream.write(apb.UploadRequest(start=apb.UploadStart(size_bytes=total)))
            upload_id = (await stream.read()).started.upload_id

            async def read_acks() -> None:
                nonlocal acknowledged
                while True:
                    msg = await stream.read()
                    if msg is grpc.aio.EOF:  # type: ignore[attr-defined]
                        return
                    acknowledged = msg.progress.committed_offset

            reader = asyncio.create_task(read_acks())
            # Send slowly (the server acknowledges about every second) and
            # kill the server once something is acknowledged, mid-stream.
            offset = 0
            while offset < total and acknowledged == 0:
                await stream.write(chunk_request(seed, offset, CHUNK))
                offset += CHUNK
                await asyncio.sleep(0.05)
            assert acknowledged > 0, "no progress acknowledged before the data ran out"
            srv.kill()
            with pytest.raises(grpc.aio.AioRpcError):
                await reader
                await stream.write(chunk_request(seed, offset, CHUNK))

        srv.start()  # same port, same data directory
        async with grpc.aio.insecure_channel(srv.address) as ch:
            stub = artifact_service_pb2_grpc.ArtifactServiceStub(ch)
            status = await stub.GetUpload(apb.GetUploadRequest(upload_id=upload_id))
            assert status.committed_offset >= acknowledged
            resume_at = status.committed_offset

            async def rest() -> AsyncIterator[apb.UploadRequest]:
                yield apb.UploadRequest(start=apb.UploadStart(upload_id=upload_id))
                for off in range(resume_at, total, CHUNK):
                    yield chunk_request(seed, off, min(CHUNK, total - off))
                yield apb.UploadRequest(
                    finish=apb.UploadFinish(digest=expected_digest(seed, total))
                )

            replies = [r async for r in stub.Upload(rest())]
            assert replies[0].started.committed_offset == resume_at
            assert replies[-1].finished.blob.size_bytes == total
    finally:
        srv.stop()


async def round_trip(stub: ArtifactServiceAsyncStub, seed: int, size: int) -> None:
    """Upload `size` generated bytes, download them, compare byte for byte."""
    digest = expected_digest(seed, size)

    async def requests() -> AsyncIterator[apb.UploadRequest]:
        yield apb.UploadRequest(start=apb.UploadStart(size_bytes=size, digest=digest))
        for off in range(0, size, CHUNK):
            yield chunk_request(seed, off, min(CHUNK, size - off))
        yield apb.UploadRequest(finish=apb.UploadFinish())

    replies = [r async for r in stub.Upload(requests())]
    assert replies[-1].finished.blob.digest == digest
    h = hashlib.sha256()
    received = checked = 0
    # chunk_bytes is a preference: the server may send smaller chunks.
    pending = bytearray()
    async for msg in stub.Download(apb.DownloadRequest(digest=digest, chunk_bytes=CHUNK)):
        if msg.WhichOneof("kind") != "chunk":
            continue
        assert msg.chunk.offset == received
        assert google_crc32c.value(msg.chunk.data) == msg.chunk.crc32c
        h.update(msg.chunk.data)
        received += len(msg.chunk.data)
        pending += msg.chunk.data
        # Byte for byte, not just the digest, one generated piece at a time.
        while pending and len(pending) >= min(CHUNK, size - checked):
            n = min(CHUNK, size - checked)
            assert pending[:n] == piece(seed, checked, n)
            del pending[:n]
            checked += n
    assert received == checked == size and "sha256:" + h.hexdigest() == digest


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_large_round_trip_keeps_server_memory_flat(
    server: ServeProcess, request: pytest.FixtureRequest
) -> None:
    options = [("grpc.max_receive_message_length", 8 * MIB)]
    async with grpc.aio.insecure_channel(server.address, options=options) as ch:
        stub = artifact_service_pb2_grpc.ArtifactServiceStub(ch)
        # A small transfer first: libraries, pools and buffers are in place.
        await round_trip(stub, seed=10, size=WARM)
        warm = server.peak_rss_kb()
        await round_trip(stub, seed=11, size=BIG)
    peak = server.peak_rss_kb()
    # Memory does not grow with the artifact: 4x the data, a bounded step.
    assert peak - warm < FLAT_KB, (warm, peak)
    if "local" in request.node.name:
        assert peak < RSS_LIMIT_KB, peak  # the local store's absolute target
