"""Publishes and deletes racing the collector: afterwards every READY version
downloads and verifies. Leases are short here so that the collector really
competes for the blobs of pushes in flight.

Runs for MODELREG_GC_RACE_SECONDS (default 5; give 60 for the full soak).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from modelregistry_server.domain import errors
from modelregistry_server.domain.manifest import Manifest, ManifestFile
from modelregistry_server.domain.names import ModelName, VersionName
from modelregistry_server.domain.resources import ModelFields, VersionFields
from support.gc_push import Parts, build, sha, upload, verify_version

SECONDS = float(os.environ.get("MODELREG_GC_RACE_SECONDS", "5"))
# Failures a publish may meet when the collector wins: the push starts over.
RETRYABLE = {"BLOB_COLLECTED", "MANIFEST_BLOB_MISSING"}


@pytest.fixture
async def parts(db_url: str, tmp_path: Path) -> AsyncIterator[Parts]:
    async for p in build(db_url, tmp_path, lease_s=1.0, publish_hold_s=4.0):
        yield p


@pytest.mark.timeout(SECONDS * 6 + 120)
async def test_publishes_and_deletes_racing_the_sweep(parts: Parts) -> None:
    rng = random.Random(13)
    # A few contents every version shares (deduplicated), one of its own each.
    pool = [rng.randbytes(rng.randrange(1, 64 * 1024)) for _ in range(8)]
    litter: list[bytes] = []
    ready: list[VersionName] = []
    stats = {"published": 0, "retried": 0, "deleted": 0, "swept": 0, "sweeps": 0}
    deadline = time.monotonic() + SECONDS
    await parts.registry.create_model(ModelName("race"), ModelFields())

    async def publish_one() -> None:
        mv = await parts.registry.create_version(ModelName("race"), VersionFields())
        files = {
            "shared.bin": rng.choice(pool),
            # Often a blob the collector is about to take: claimed by dedup.
            "old.bin": rng.choice(litter[-40:] or pool),
            "own.bin": rng.randbytes(rng.randrange(1, 32768)),
        }
        while True:
            try:
                entries = []
                for path, data in files.items():
                    await upload(parts.artifacts, data)
                    entries.append(ManifestFile(path, len(data), sha(data)))
                    await asyncio.sleep(rng.random() * 0.01)
                await upload(parts.artifacts, Manifest(tuple(entries)).to_json(), str(mv.name))
            except errors.DomainError as exc:
                assert exc.reason in RETRYABLE, repr(exc)
                stats["retried"] += 1
                continue
            ready.append(mv.name)
            stats["published"] += 1
            return

    async def publisher() -> None:
        while time.monotonic() < deadline:
            await publish_one()

    async def deleter() -> None:
        while time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            if len(ready) > 2:
                victim = ready.pop(rng.randrange(len(ready)))
                await parts.registry.delete_version(victim, None, force=True)
                stats["deleted"] += 1

    async def litterer() -> None:
        """Blobs that become garbage once their lease lapses: they keep every
        sweep busy (widening the window between its mark and its deletes)
        and publishers claim some of them just as the sweep comes for them."""
        while time.monotonic() < deadline:
            data = rng.randbytes(512)
            try:
                await upload(parts.artifacts, data)
            except errors.DomainError as exc:
                # Its upload row outlived its 1 s TTL under load and the
                # sweep took the blob before the claim: said so, not lost.
                assert exc.reason == "BLOB_COLLECTED", repr(exc)
                stats["retried"] += 1
                continue
            litter.append(data)

    async def sweeper() -> None:
        while time.monotonic() < deadline:
            report = await parts.collector.collect()
            stats["swept"] += report.blobs_deleted
            stats["sweeps"] += 1
            await asyncio.sleep(0.02)

    await asyncio.gather(publisher(), publisher(), deleter(), litterer(), sweeper())
    report = await parts.collector.collect()
    stats["swept"] += report.blobs_deleted
    print("gc race:", stats)  # shown with -s
    # The race was real: versions were published and the collector deleted blobs.
    assert stats["published"] > 0 and stats["swept"] > 0, stats
    for name in ready:
        await verify_version(parts, name)
    # And what is left is exactly what the READY versions need.
    needed = set()
    for name in ready:
        mv = await parts.registry.get_version(name)
        assert mv.artifact is not None
        needed.add(mv.artifact.digest)
    assert needed <= {b.digest async for b in parts.blobs.list_blobs()}
