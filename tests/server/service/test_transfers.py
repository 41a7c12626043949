"""Transfer limits: slots for streams, small chunks until a client proves it
reads, a shared budget for larger ones."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from modelregistry_server.blobs.local_blobs import LocalBlobStore
from modelregistry_server.domain import errors
from modelregistry_server.service.artifacts import Artifacts
from modelregistry_server.service.transfers import KIB, TransferLimits, TransferSettings
from modelregistry_server.store import migrate
from modelregistry_server.store.engine import make_engine
from modelregistry_server.store.sqlalchemy_store import SqlRegistryStore
from modelregistry_server.store.upload_store import SqlUploadStore

BLOB = bytes(range(256)) * 4 * 1024  # 1 MiB
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()
SETTINGS = TransferSettings(
    max_downloads=2,
    max_uploads=1,
    download_buffer_bytes=128 * KIB,
    small_chunk_bytes=16 * KIB,
    proven_bytes=256 * KIB,
    large_chunk_bytes=128 * KIB,
)


@pytest.fixture
async def artifacts(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Artifacts]:
    engine = make_engine(sqlite_url)
    await migrate.upgrade(engine)
    blobs = LocalBlobStore(tmp_path / "blobs")
    upload = await blobs.begin_upload("seed")
    await upload.write(BLOB)
    await upload.commit(DIGEST, len(BLOB))
    limits = TransferLimits(SETTINGS)
    try:
        yield Artifacts(SqlRegistryStore(engine), SqlUploadStore(engine), blobs, limits=limits)
    finally:
        await blobs.close()
        await engine.dispose()


async def _sizes(artifacts: Artifacts, chunk_bytes: int = 1024 * KIB) -> list[int]:
    sizes: list[int] = []
    async with artifacts.download(DIGEST, "", "", 0, 0, chunk_bytes) as download:
        expected = 0
        async for offset, data, _ in download.chunks:
            assert offset == expected
            expected += len(data)
            sizes.append(len(data))
    assert expected == len(BLOB)
    return sizes


async def test_chunks_stay_small_until_the_client_has_taken_proven_bytes(
    artifacts: Artifacts,
) -> None:
    sizes = await _sizes(artifacts)
    small = SETTINGS.proven_bytes // SETTINGS.small_chunk_bytes
    assert sizes[:small] == [SETTINGS.small_chunk_bytes] * small
    # Then the largest chunk the server gives, not the 1 MiB asked for.
    assert set(sizes[small:]) == {SETTINGS.large_chunk_bytes}
    assert artifacts._limits.buffered == 0  # the grant went back with the stream


async def test_a_spent_budget_leaves_other_streams_on_small_chunks(artifacts: Artifacts) -> None:
    async with artifacts.download(DIGEST, "", "", 0, 0, 0) as first:
        async for offset, _, _ in first.chunks:
            if offset > SETTINGS.proven_bytes:
                break  # holds the whole budget from here on
        assert artifacts._limits.buffered == SETTINGS.download_buffer_bytes
        # Slower, never blocked: the other stream still gets every byte.
        sizes = await _sizes(artifacts)
        assert set(sizes) == {SETTINGS.small_chunk_bytes}
    assert artifacts._limits.buffered == 0


async def test_transfers_past_the_cap_are_refused_with_a_retry_delay(
    artifacts: Artifacts,
) -> None:
    async with AsyncExitStack() as stack:
        for _ in range(SETTINGS.max_downloads):
            await stack.enter_async_context(artifacts.download(DIGEST, "", "", 0, 0, 0))
        with pytest.raises(errors.ResourceExhausted) as exc:
            async with artifacts.download(DIGEST, "", "", 0, 0, 0):
                pass
        assert exc.value.reason == "TOO_MANY_TRANSFERS"
        assert int(exc.value.metadata["retry_delay_ms"]) >= 1000
        with (
            artifacts.upload_stream(),
            pytest.raises(errors.ResourceExhausted),
            artifacts.upload_stream(),
        ):
            pass
    # Slots come back when streams end, failed ones included.
    assert await _sizes(artifacts)
    with pytest.raises(errors.NotFound):
        async with artifacts.download("sha256:" + "0" * 64, "", "", 0, 0, 0):
            pass
    assert artifacts._limits.downloads == 0


async def test_the_sdk_waits_for_a_transfer_slot(tmp_path: Path) -> None:
    """A client refused with TOO_MANY_TRANSFERS comes back after the delay
    the server gave, and gets its download once a slot is free."""
    import asyncio

    import grpc
    from modelregistry import RegistryClient
    from modelregistry.v1 import artifact_service_pb2 as apb
    from modelregistry.v1 import artifact_service_pb2_grpc
    from modelregistry_server.config import ServerConfig
    from support.in_process import serving

    config = ServerConfig(
        listen="127.0.0.1:0", data_dir=tmp_path / "data", max_downloads=1, max_uploads=4
    )
    async with serving(config) as running:
        address = f"127.0.0.1:{running.port}"
        async with RegistryClient(address) as client:
            blob = tmp_path / "blob.bin"
            blob.write_bytes(BLOB)
            await client.create_model("m")
            version = await client.create_model_version("models/m")
            await client.push(version.name, blob)
        async with grpc.aio.insecure_channel(address) as ch:
            # One download holds the only slot for a moment.
            held = artifact_service_pb2_grpc.ArtifactServiceStub(ch).Download(
                apb.DownloadRequest(digest=DIGEST)
            )
            await held.read()
            asyncio.get_running_loop().call_later(1.5, held.cancel)
            async with RegistryClient(address) as client:
                result = await client.pull(version.name, tmp_path / "out")
        assert (tmp_path / "out" / "blob.bin").read_bytes() == BLOB
        assert result is not None
