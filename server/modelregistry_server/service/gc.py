"""Garbage collection of blobs: mark, then sweep under a per-blob lock.

A blob is garbage when no reference source names it (see `store.gc_sql`:
versions' manifests and files, unexpired uploads, leases) and it is older
than the grace period. One run:

1. completes the file references of versions published before they were
   recorded (reads their manifests), so the mark is never short;
2. lists the blob store, then marks: reads every source. A blob written
   after the listing is not a candidate; one referenced after the mark is
   caught by step 3;
3. sweeps the candidates in batches, each in a transaction that locks the
   digests, checks every source again and only then deletes
   (`delete_unreferenced`).

Writers claim blobs before they rely on them (`Artifacts` holds a lease and
then checks the blob exists), so a publish racing a sweep either keeps the
blob or fails cleanly; it never makes a version READY on a deleted blob.
docs/garbage-collection.md has the whole argument.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import aclosing
from dataclasses import dataclass

from modelregistry.v1.error_reasons import ErrorReason

from ..blobs.base import BlobStore, StoredBlob
from ..config import DEFAULTS
from ..domain import errors
from ..domain.manifest import MAX_MANIFEST_BYTES, parse_manifest
from ..store.base import GcStore

log = logging.getLogger("modelreg.gc")

MIN_GRACE_S = 60.0
# Candidates rechecked and deleted per transaction: few enough that a writer
# claiming one of them waits briefly, many enough that commits do not dominate.
SWEEP_BATCH = 200
MAX_GRACE_S = 365 * 24 * 3600.0


@dataclass(frozen=True)
class GcReport:
    blobs_scanned: int = 0
    blobs_referenced: int = 0
    blobs_in_grace: int = 0
    blobs_deleted: int = 0
    bytes_deleted: int = 0
    # Candidates that a writer claimed between the mark and the sweep.
    blobs_kept_by_writers: int = 0
    dry_run: bool = False
    duration_s: float = 0.0


def check_grace(grace_s: float) -> float:
    if not MIN_GRACE_S <= grace_s <= MAX_GRACE_S:
        raise errors.InvalidArgument(
            ErrorReason.INVALID_FIELD,
            f"grace must be {MIN_GRACE_S:.0f} s to {MAX_GRACE_S / 86400:.0f} days",
            "grace",
        )
    return grace_s


class GarbageCollector:
    def __init__(
        self, store: GcStore, blobs: BlobStore, grace_s: float = DEFAULTS.gc_grace_s
    ) -> None:
        self._store = store
        self._blobs = blobs
        # Not bounded here: the operator's flag (and tests) may go below the
        # minimum a caller of CollectGarbage may ask for.
        self._grace_s = max(0.0, grace_s)
        # One run at a time in a process; replicas may overlap safely.
        self._running = asyncio.Lock()

    async def collect(self, dry_run: bool = False, grace_s: float | None = None) -> GcReport:
        grace = self._grace_s if grace_s is None else check_grace(grace_s)
        async with self._running:
            started = time.monotonic()
            report = await self._run(dry_run, grace)
        report = GcReport(**{**report.__dict__, "duration_s": time.monotonic() - started})
        log.info("garbage collection", extra=report.__dict__)
        return report

    async def _run(self, dry_run: bool, grace_s: float) -> GcReport:
        await self._complete_refs()
        cutoff = time.time() - grace_s
        listed: list[StoredBlob] = []
        async with aclosing(self._blobs.list_blobs()) as blobs:  # type: ignore[type-var]
            async for blob in blobs:
                listed.append(blob)
        marked = await self._store.referenced_digests()
        referenced = in_grace = deleted = freed = kept = 0
        doomed: list[StoredBlob] = []
        for blob in listed:
            if blob.digest in marked:
                referenced += 1
            elif blob.modified_at > cutoff:
                in_grace += 1
            else:
                doomed.append(blob)
        for at in range(0, len(doomed), SWEEP_BATCH):
            batch = doomed[at : at + SWEEP_BATCH]
            if dry_run:
                deleted += len(batch)
                freed += sum(b.size for b in batch)
                continue
            outcome = await self._store.delete_unreferenced(
                [b.digest for b in batch], self._blobs.delete
            )
            for blob in batch:
                if blob.digest not in outcome:
                    kept += 1
                elif outcome[blob.digest]:
                    deleted += 1
                    freed += blob.size
        if not dry_run:
            await self._store.drop_expired_leases()
        return GcReport(len(listed), referenced, in_grace, deleted, freed, kept, dry_run)

    async def _complete_refs(self) -> None:
        """Versions published before file references were recorded: read
        their manifests once and record what they list."""
        while batch := await self._store.incomplete_versions():
            for version_id, manifest_digest in batch:
                await self._store.complete_version(version_id, await self._files(manifest_digest))

    async def _files(self, digest: str) -> list[tuple[str, int]]:
        stored = await self._blobs.stat(digest)
        if stored is None or stored.size > MAX_MANIFEST_BYTES:
            return []  # gone, or not a manifest: the artifact is all it references
        data = bytearray()
        try:
            async with aclosing(self._blobs.open_reader(digest)) as reader:
                async for chunk in reader:
                    data += chunk
        except errors.NotFound:
            return []  # nothing left to keep
        try:
            manifest = parse_manifest(bytes(data))
        except errors.DomainError:
            return []  # not a manifest: the artifact itself is all it references
        return [(f.digest, f.size_bytes) for f in manifest.files]

    async def collect_forever(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.collect()
            except Exception:
                log.exception("garbage collection failed")
