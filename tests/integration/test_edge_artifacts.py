"""Artifacts at a regional edge: a miss is fetched from the primary once
however many ask at the same time, verified, stored in the edge's own blob
store and served from there, also while the primary is down; bytes that do
not match their digest are never served."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from modelregistry import RegistryClient
from modelregistry.v1 import artifact_service_pb2 as apb
from modelregistry.v1 import artifact_service_pb2_grpc
from modelregistry.v1.error_reasons import ErrorReason
from modelregistry_server.config import ServerConfig
from modelregistry_server.edge.pull_through import PullThroughBlobs
from modelregistry_server.server import Running
from support.grpc_errors import error_info
from support.in_process import start_server

VERSION = "models/fraud/versions/1"


async def _download(address: str, digest: str) -> bytes:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = artifact_service_pb2_grpc.ArtifactServiceStub(channel)
        parts = [
            m.chunk.data
            async for m in stub.Download(apb.DownloadRequest(digest=digest))
            if m.HasField("chunk")
        ]
    return b"".join(parts)


@pytest.fixture
async def primary(tmp_path: Path) -> AsyncIterator[Running]:
    server = await start_server(ServerConfig(listen="127.0.0.1:0", data_dir=tmp_path / "primary"))
    try:
        yield server
    finally:
        await server.stop(grace=1)


async def _edge(primary: Running, tmp_path: Path) -> Running:
    """An edge of `primary`, caught up with it once."""
    edge = await start_server(
        ServerConfig(
            listen="127.0.0.1:0",
            data_dir=tmp_path / "edge",
            upstream=f"127.0.0.1:{primary.port}",
            region="eu-west",
        )
    )
    assert edge.edge is not None
    await asyncio.wait_for(edge.edge.follower.state.synced.wait(), 30)
    return edge


async def _published(primary: Running, tmp_path: Path) -> tuple[str, bytes, int]:
    """A READY version with a 3 MiB file: (the file's digest, its bytes, revision)."""
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    data = os.urandom(3 * 1024 * 1024 + 17)
    (model_dir / "weights.bin").write_bytes(data)
    async with RegistryClient(f"127.0.0.1:{primary.port}") as client:
        await client.create_model("fraud")
        await client.create_model_version("models/fraud")
        await client.push(VERSION, model_dir)
        await client.set_alias("models/fraud/aliases/production", 1)
        revision = client.core.last_write_revision
    return "sha256:" + hashlib.sha256(data).hexdigest(), data, revision


async def test_a_miss_is_fetched_once_verified_and_then_served_locally(
    primary: Running, tmp_path: Path
) -> None:
    digest, data, revision = await _published(primary, tmp_path)
    edge = await _edge(primary, tmp_path)
    edge_address = f"127.0.0.1:{edge.port}"
    try:
        assert isinstance(edge.blobs, PullThroughBlobs)
        got = await asyncio.gather(*(_download(edge_address, digest) for _ in range(8)))
        assert all(g == data for g in got)
        assert edge.blobs.fetches == 1  # eight requests, one fetch
        # The whole version through the SDK, reading the edge.
        async with RegistryClient(edge_address) as reader:
            reader.core.min_revision = revision
            pulled = tmp_path / "pulled"
            await reader.pull("models/fraud/aliases/production", pulled)
        assert (pulled / "weights.bin").read_bytes() == data
        # The primary goes away: what the edge holds, it still serves.
        await primary.stop(grace=1)
        assert await _download(edge_address, digest) == data
    finally:
        await edge.stop(grace=1)


async def test_bytes_that_do_not_verify_are_never_served(primary: Running, tmp_path: Path) -> None:
    digest, data, _ = await _published(primary, tmp_path)
    # The primary's copy rots on disk (its reads do not re-hash).
    hexdigest = digest.removeprefix("sha256:")
    stored = tmp_path / "primary" / "blobs" / "blobs" / "sha256" / hexdigest[:2] / hexdigest
    stored.chmod(0o600)
    with stored.open("r+b") as f:
        f.seek(1000)
        f.write(b"\x00" * 16 if data[1000:1016] != b"\x00" * 16 else b"\x01" * 16)
    edge = await _edge(primary, tmp_path)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await _download(f"127.0.0.1:{edge.port}", digest)
        assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
        assert error_info(exc.value).reason == ErrorReason.BLOB_STORE_UNAVAILABLE.name
        assert isinstance(edge.blobs, PullThroughBlobs)
        assert await edge.blobs._local.stat(digest) is None  # nothing published
    finally:
        await edge.stop(grace=1)
