"""The agent's local artifact cache: one verified directory per artifact digest.

A directory is complete once its `.complete` marker exists (written after
every file verified), so a restart with a warm cache downloads nothing. When
the cache grows past its limit, the least recently used artifacts that are
not in use are evicted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from ..artifacts import PullResult, pull
from ..client import RegistryClient

log = logging.getLogger("modelregistry.serving")

MARKER = ".complete"


def _hex(digest: str) -> str:
    return digest.removeprefix("sha256:")


def _size_of(directory: Path) -> int:
    total = 0
    for root, _, files in os.walk(directory):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(root) / name).stat().st_size
    return total


class ArtifactCache:
    def __init__(self, root: Path, max_bytes: int | None = None) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.downloads = 0  # artifacts fetched from the registry (not cache hits)
        self.bytes_received = 0

    def path(self, digest: str) -> Path:
        return self.root / "artifacts" / _hex(digest)

    def has(self, digest: str) -> bool:
        return (self.path(digest) / MARKER).is_file()

    async def ensure(
        self,
        client: RegistryClient,
        version: str,
        digest: str,
        progress: Callable[[int, int, str], None] | None = None,
    ) -> Path:
        """The verified directory of `version`'s artifact, downloading it if needed."""
        target = self.path(digest)
        if self.has(digest):
            await asyncio.to_thread(os.utime, target / MARKER)
            return target
        result: PullResult = await pull(client, version, target, progress=progress)
        if result.digest != digest:
            # The version's artifact is immutable once READY; a different
            # digest means the caller resolved something else meanwhile.
            raise RuntimeError(f"{version} has artifact {result.digest}, expected {digest}")
        self.downloads += 1
        self.bytes_received += result.bytes_received
        await asyncio.to_thread(self._mark, target, digest)
        return target

    @staticmethod
    def _mark(target: Path, digest: str) -> None:
        marker = target / MARKER
        with open(marker, "w") as f:
            f.write(digest + "\n")
            f.flush()
            os.fsync(f.fileno())

    async def evict(self, in_use: set[str]) -> list[str]:
        """Drop least recently used complete artifacts not in `in_use` until
        the cache fits its limit; returns the evicted digests."""
        if self.max_bytes is None:
            return []
        return await asyncio.to_thread(self._evict, in_use, self.max_bytes)

    def _evict(self, in_use: set[str], max_bytes: int) -> list[str]:
        base = self.root / "artifacts"
        if not base.is_dir():
            return []
        entries = []
        for d in base.iterdir():
            marker = d / MARKER
            used = marker.stat().st_mtime if marker.exists() else time.time()
            entries.append((used, d, _size_of(d)))
        total = sum(size for _, _, size in entries)
        evicted = []
        for _, d, size in sorted(entries, key=lambda e: e[0]):
            if total <= max_bytes:
                break
            digest = "sha256:" + d.name
            if digest in in_use:
                continue
            shutil.rmtree(d, ignore_errors=True)
            total -= size
            evicted.append(digest)
            log.info("evicted artifact", extra={"digest": digest, "bytes": size})
        return evicted
