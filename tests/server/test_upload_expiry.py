"""Abandoned uploads expire: their row goes and their staged bytes are reclaimed,
while uploads that make progress stay."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import google_crc32c
import pytest
from modelregistry_server.blobs.local_blobs import LocalBlobStore
from modelregistry_server.domain import errors
from modelregistry_server.service.artifacts import Artifacts, ArtifactSettings, UploadSession
from modelregistry_server.store import migrate
from modelregistry_server.store.engine import make_engine
from modelregistry_server.store.sqlalchemy_store import SqlRegistryStore
from modelregistry_server.store.upload_store import SqlUploadStore


@pytest.fixture
async def parts(db_url: str, tmp_path: Path) -> AsyncIterator[tuple[Artifacts, LocalBlobStore]]:
    engine = make_engine(db_url)
    await migrate.upgrade(engine)
    blobs = LocalBlobStore(tmp_path / "blobs")
    artifacts = Artifacts(
        SqlRegistryStore(engine),
        SqlUploadStore(engine),
        blobs,
        ArtifactSettings(upload_ttl_s=0.3, flush_interval_s=0.0),
    )
    try:
        yield artifacts, blobs
    finally:
        await blobs.close()
        await engine.dispose()


async def begin(artifacts: Artifacts, data: bytes) -> str:
    session = await artifacts.start("", len(data) * 2, "", "", "")
    assert isinstance(session, UploadSession)
    await artifacts.write_chunk(session, 0, data, int(google_crc32c.value(data)))
    await artifacts.pause(session)
    await artifacts.release(session)
    return session.record.upload_id


async def test_idle_uploads_expire_and_are_reclaimed(
    parts: tuple[Artifacts, LocalBlobStore],
) -> None:
    artifacts, blobs = parts
    upload_id = await begin(artifacts, b"x" * 1000)
    record, committed = await artifacts.get_upload(upload_id)
    assert committed == 1000 and record.size_bytes == 2000
    assert [u.upload_id for u in await blobs.list_uploads()] == [upload_id]
    await asyncio.sleep(0.5)
    assert await artifacts.reclaim() == 1
    with pytest.raises(errors.NotFound) as exc:
        await artifacts.get_upload(upload_id)
    assert exc.value.reason == "UPLOAD_NOT_FOUND"
    assert await blobs.list_uploads() == []


async def test_a_cancelled_upload_leaves_nothing(parts: tuple[Artifacts, LocalBlobStore]) -> None:
    artifacts, blobs = parts
    upload_id = await begin(artifacts, b"y" * 10)
    await artifacts.cancel(upload_id)
    assert await blobs.list_uploads() == []
    with pytest.raises(errors.NotFound):
        await artifacts.get_upload(upload_id)


async def test_a_fresh_upload_outlives_an_idle_one(parts: tuple[Artifacts, LocalBlobStore]) -> None:
    artifacts, blobs = parts
    await begin(artifacts, b"x" * 100)
    await asyncio.sleep(0.5)
    fresh = await begin(artifacts, b"z" * 100)
    assert await artifacts.reclaim() == 1
    assert [u.upload_id for u in await blobs.list_uploads()] == [fresh]
    _, committed = await artifacts.get_upload(fresh)
    assert committed == 100


async def test_staging_without_a_row_goes_after_the_same_ttl(
    parts: tuple[Artifacts, LocalBlobStore],
) -> None:
    """Staged bytes nothing refers to (a crash between storage and database) are
    reclaimed like any idle upload: by the configured TTL, not sooner."""
    artifacts, blobs = parts
    orphan = await blobs.begin_upload("orphan")
    await orphan.write(b"o" * 10)
    await orphan.flush()
    await orphan.close()
    assert await artifacts.reclaim() == 0
    assert [u.upload_id for u in await blobs.list_uploads()] == ["orphan"]
    await asyncio.sleep(0.5)
    assert await artifacts.reclaim() == 1
    assert await blobs.list_uploads() == []
