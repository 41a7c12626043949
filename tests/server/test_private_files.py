"""What the server keeps on local disk is owner-only: the data directory
(0700), the embedded database (0600), staged uploads (0600) and published
blobs (0400), also when an older install left the directory open."""

from __future__ import annotations

import hashlib
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import google_crc32c
import grpc
from modelregistry.v1 import artifact_service_pb2 as apb
from modelregistry.v1 import artifact_service_pb2_grpc
from modelregistry_server.config import ServerConfig
from support.in_process import serving


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_the_data_directory_is_owner_only(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    data = b"weights" * 1000
    digest = "sha256:" + hashlib.sha256(data).hexdigest()

    async def requests() -> AsyncIterator[apb.UploadRequest]:
        yield apb.UploadRequest(start=apb.UploadStart(size_bytes=len(data), digest=digest))
        crc = google_crc32c.value(data)
        yield apb.UploadRequest(chunk=apb.UploadChunk(offset=0, data=data, crc32c=crc))
        yield apb.UploadRequest(finish=apb.UploadFinish())

    async def half() -> AsyncIterator[apb.UploadRequest]:
        yield apb.UploadRequest(start=apb.UploadStart(size_bytes=10))

    config = ServerConfig(listen="127.0.0.1:0", data_dir=data_dir)
    async with (
        serving(config) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch,
    ):
        stub = artifact_service_pb2_grpc.ArtifactServiceStub(ch)
        [r async for r in stub.Upload(requests())]
        [r async for r in stub.Upload(half())]  # stays staged
    assert mode(data_dir) == 0o700
    database = data_dir / "registry.db"
    assert mode(database) == 0o600
    for directory in [p for p in (data_dir / "blobs").rglob("*") if p.is_dir()]:
        assert mode(directory) == 0o700, directory
    files = [p for p in (data_dir / "blobs").rglob("*") if p.is_file()]
    blob = next(p for p in files if p.name == digest.removeprefix("sha256:"))
    assert mode(blob) == 0o400
    staged = [p for p in files if p.parent.name == "uploads"]
    assert staged and all(mode(p) == 0o600 for p in staged)
    for sidecar in data_dir.glob("registry.db-*"):  # SQLite's WAL and shared memory
        assert mode(sidecar) & 0o077 == 0, sidecar
