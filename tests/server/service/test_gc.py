"""Garbage collection of blobs: what goes, what stays, and that it is safe
while uploads, publishes and deletes run (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from modelregistry_server.domain import errors
from modelregistry_server.domain.names import ModelName
from modelregistry_server.service.artifacts import UploadSession
from modelregistry_server.store.tables import blob_leases, blob_refs, model_versions
from sqlalchemy import update
from support.gc_push import Parts, build, push, sha, upload, verify_version


@pytest.fixture
async def parts(db_url: str, tmp_path: Path) -> AsyncIterator[Parts]:
    async for p in build(db_url, tmp_path):
        yield p


def age(parts: Parts, digest: str, seconds: float) -> None:
    """Make a blob look `seconds` old (the grace period goes by the file's time)."""
    then = time.time() - seconds
    os.utime(parts.blobs.root / "blobs" / "sha256" / digest[7:9] / digest[7:], (then, then))


async def drop_leases(parts: Parts) -> None:
    async with parts.gc_store.engine.begin() as conn:
        await conn.execute(blob_leases.delete())


async def stored(parts: Parts) -> set[str]:
    return {b.digest async for b in parts.blobs.list_blobs()}


async def test_unreferenced_blobs_go_and_referenced_stay(parts: Parts) -> None:
    kept = await push(parts, "fraud", {"model.bin": b"weights" * 1000})
    orphan = await upload(parts.artifacts, b"orphan" * 500)
    # The upload's lease keeps a finished blob for its manifest; let it lapse.
    await drop_leases(parts)
    before = await stored(parts)
    dry = await parts.collector.collect(dry_run=True)
    assert (dry.blobs_deleted, dry.bytes_deleted, dry.dry_run) == (1, 3000, True)
    assert await stored(parts) == before
    report = await parts.collector.collect()
    assert (report.blobs_scanned, report.blobs_referenced) == (3, 2)
    assert (report.blobs_deleted, report.bytes_deleted) == (1, 3000)
    assert await stored(parts) == before - {orphan}
    await verify_version(parts, kept)


async def test_grace_keeps_young_blobs(parts: Parts) -> None:
    young = await upload(parts.artifacts, b"young" * 100)
    old = await upload(parts.artifacts, b"old" * 100)
    await drop_leases(parts)
    age(parts, old, 7200)
    report = await parts.collector.collect(grace_s=3600)
    assert (report.blobs_in_grace, report.blobs_deleted) == (1, 1)
    assert await stored(parts) == {young}


async def test_a_finished_upload_is_leased_until_its_manifest_comes(parts: Parts) -> None:
    data = b"file of a push in progress" * 100
    digest = await upload(parts.artifacts, data)
    age(parts, digest, 10 * 86400)
    report = await parts.collector.collect()
    assert report.blobs_deleted == 0 and await stored(parts) == {digest}


async def test_deleting_versions_frees_unshared_blobs_and_shared_ones_last(parts: Parts) -> None:
    shared = b"tokenizer" * 300
    v1 = await push(parts, "fraud", {"tok.json": shared, "w.bin": b"one" * 1000})
    v2 = await push(parts, "churn", {"tok.json": shared, "w.bin": b"two" * 1000})
    await drop_leases(parts)
    assert (await parts.collector.collect()).blobs_deleted == 0
    await parts.registry.delete_version(v1, None, force=True)
    report = await parts.collector.collect()
    # v1's manifest and its own weights; the shared tokenizer stays for v2.
    assert report.blobs_deleted == 2
    assert sha(shared) in await stored(parts)
    await verify_version(parts, v2)
    await parts.registry.delete_model(ModelName("churn"), None, force=True)
    assert (await parts.collector.collect()).blobs_deleted == 3
    assert await stored(parts) == set()


async def test_versions_from_before_file_references_keep_their_files(parts: Parts) -> None:
    name = await push(parts, "fraud", {"a.bin": b"a" * 2000, "b.bin": b"b" * 3000})
    async with parts.gc_store.engine.begin() as conn:
        await conn.execute(blob_leases.delete())
        # As a version published before file references were recorded.
        mv = await parts.registry.get_version(name)
        assert mv.artifact is not None
        await conn.execute(blob_refs.delete().where(blob_refs.c.digest != mv.artifact.digest))
        await conn.execute(update(model_versions).values(blob_refs_complete=False))
    report = await parts.collector.collect()
    assert report.blobs_deleted == 0 and report.blobs_referenced == 3
    await verify_version(parts, name)


async def test_grace_bounds_for_callers(parts: Parts) -> None:
    with pytest.raises(errors.InvalidArgument) as exc:
        await parts.collector.collect(grace_s=1)
    assert exc.value.reason == "INVALID_FIELD"


async def test_a_claim_after_the_mark_keeps_the_blob(parts: Parts) -> None:
    """The sweep asks again under the lock: a blob claimed since the mark stays."""
    digest = await upload(parts.artifacts, b"claimed late" * 100)
    await drop_leases(parts)
    assert digest not in await parts.gc_store.referenced_digests()  # the mark
    await parts.gc_store.hold([digest], 60_000_000)  # a publish claims it
    assert await parts.gc_store.delete_if_unreferenced(digest, parts.blobs.delete) is None
    assert digest in await stored(parts)


async def test_a_reference_after_the_mark_keeps_the_blob(parts: Parts) -> None:
    data = b"referenced late" * 100
    digest = await upload(parts.artifacts, data)
    await drop_leases(parts)
    assert digest not in await parts.gc_store.referenced_digests()
    name = await push(parts, "fraud", {"late.bin": data})
    await drop_leases(parts)
    assert await parts.gc_store.delete_if_unreferenced(digest, parts.blobs.delete) is None
    await verify_version(parts, name)


async def test_a_claim_waits_for_a_sweep_in_progress_and_then_fails_cleanly(
    parts: Parts,
) -> None:
    """While the sweep holds a digest's lock a claim on it waits; once the
    sweep has deleted the blob, the upload that found it says so (retry), or
    (SQLite, where the whole start waited) asks for the bytes: never does it
    finish at once on a blob that is gone."""
    data = b"swept while claimed" * 100
    digest = await upload(parts.artifacts, data)
    await drop_leases(parts)
    inside, release = asyncio.Event(), asyncio.Event()

    async def slow_delete(d: str) -> bool:
        inside.set()
        await release.wait()
        return await parts.blobs.delete(d)

    sweep = asyncio.create_task(parts.gc_store.delete_if_unreferenced(digest, slow_delete))
    await inside.wait()
    claim = asyncio.create_task(parts.artifacts.start("", len(data), sha(data), "", ""))
    await asyncio.sleep(0.5)
    assert not claim.done()  # waiting on the sweep's lock
    release.set()
    assert await sweep is True
    try:
        started = await claim
    except errors.Aborted as exc:
        assert exc.reason == "BLOB_COLLECTED"
    else:
        assert isinstance(started, UploadSession), started
        await parts.artifacts.release(started)
    assert digest not in await stored(parts)
