"""Pushing versions through the data-plane use cases, for the collector's tests."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path

import google_crc32c
from modelregistry_server.blobs.local_blobs import LocalBlobStore
from modelregistry_server.domain import errors
from modelregistry_server.domain.manifest import MEDIA_TYPE, Manifest, ManifestFile, parse_manifest
from modelregistry_server.domain.names import ModelName, VersionName
from modelregistry_server.domain.resources import ModelFields, VersionFields
from modelregistry_server.service.artifacts import Artifacts, ArtifactSettings, UploadSession
from modelregistry_server.service.gc import GarbageCollector
from modelregistry_server.store import migrate
from modelregistry_server.store.engine import make_engine
from modelregistry_server.store.gc_sql import SqlGcStore
from modelregistry_server.store.sqlalchemy_store import SqlRegistryStore
from modelregistry_server.store.upload_store import SqlUploadStore


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Parts:
    registry: SqlRegistryStore
    artifacts: Artifacts
    blobs: LocalBlobStore
    gc_store: SqlGcStore
    collector: GarbageCollector


async def build(
    db_url: str, root: Path, lease_s: float = 3600.0, publish_hold_s: float = 300.0
) -> AsyncIterator[Parts]:
    engine = make_engine(db_url)
    await migrate.upgrade(engine)
    blobs = LocalBlobStore(root / "blobs")
    gc_store = SqlGcStore(engine)
    registry = SqlRegistryStore(engine)
    artifacts = Artifacts(
        registry,
        SqlUploadStore(engine),
        blobs,
        ArtifactSettings(upload_ttl_s=lease_s, flush_interval_s=0.0, publish_hold_s=publish_hold_s),
        claims=gc_store,
    )
    try:
        yield Parts(registry, artifacts, blobs, gc_store, GarbageCollector(gc_store, blobs, 0.0))
    finally:
        await blobs.close()
        await engine.dispose()


async def upload(artifacts: Artifacts, data: bytes, version: str = "") -> str:
    media = MEDIA_TYPE if version else ""
    started = await artifacts.start("", len(data), sha(data), version, media)
    if not isinstance(started, UploadSession):
        return started.blob.digest
    try:
        for at in range(0, len(data), 1 << 20):
            piece = data[at : at + (1 << 20)]
            await artifacts.write_chunk(started, at, piece, int(google_crc32c.value(piece)))
        published = await artifacts.finish(started, sha(data))
    finally:
        await artifacts.release(started)
    return published.blob.digest


async def push(parts: Parts, model: str, files: dict[str, bytes]) -> VersionName:
    """A version of `model` (created if need be) with these files."""
    with contextlib.suppress(errors.AlreadyExists):
        await parts.registry.create_model(ModelName(model), ModelFields())
    mv = await parts.registry.create_version(ModelName(model), VersionFields())
    entries = []
    for path, data in files.items():
        await upload(parts.artifacts, data)
        entries.append(ManifestFile(path, len(data), sha(data)))
    await upload(parts.artifacts, Manifest(tuple(entries)).to_json(), str(mv.name))
    return mv.name


async def read(blobs: LocalBlobStore, digest: str) -> bytes:
    out = bytearray()
    async with aclosing(blobs.open_reader(digest)) as reader:
        async for chunk in reader:
            out += chunk
    return bytes(out)


async def verify_version(parts: Parts, name: VersionName) -> None:
    """The version's manifest and every file it lists are stored and intact."""
    mv = await parts.registry.get_version(name)
    assert mv.artifact is not None, name
    manifest_bytes = await read(parts.blobs, mv.artifact.digest)
    assert sha(manifest_bytes) == mv.artifact.digest
    for entry in parse_manifest(manifest_bytes).files:
        data = await read(parts.blobs, entry.digest)
        assert sha(data) == entry.digest and len(data) == entry.size_bytes, (name, entry.path)
