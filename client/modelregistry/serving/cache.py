"""The agent's local artifact cache: one verified directory per artifact digest.

A directory is complete once its `.complete` marker exists (written after
every file verified), so a restart with a warm cache downloads nothing. Files
are kept once per digest under `files/` and hard-linked into the artifact
directories, so versions that share a file (the same weights, a new config)
hold its bytes once and download it once. When the cache grows past its
limit, the least recently used artifacts that are not in use are evicted, and
then the files no artifact links any more.
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


def _disk_usage(*directories: Path) -> int:
    """Bytes under `directories`, each hard-linked file counted once."""
    seen: dict[tuple[int, int], int] = {}
    for directory in directories:
        for root, _, files in os.walk(directory):
            for name in files:
                with contextlib.suppress(OSError):
                    st = (Path(root) / name).stat()
                    seen[(st.st_dev, st.st_ino)] = st.st_size
    return sum(seen.values())


def _drop_unlinked(files: Path) -> None:
    """Remove the shared files that no artifact directory links any more."""
    if not files.is_dir():
        return
    for f in files.iterdir():
        with contextlib.suppress(OSError):
            if f.stat().st_nlink == 1:
                f.unlink()


class ArtifactCache:
    def __init__(self, root: Path, max_bytes: int | None = None) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.downloads = 0  # artifacts fetched from the registry (not cache hits)
        self.bytes_received = 0

    @property
    def files(self) -> Path:
        """Every cached file once, named by its sha256 hex."""
        return self.root / "files"

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
        result: PullResult = await pull(
            client, version, target, progress=progress, shared_files=self.files
        )
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
            entries.append((used, d))
        total = _disk_usage(base, self.files)
        evicted = []
        for _, d in sorted(entries, key=lambda e: e[0]):
            if total <= max_bytes:
                break
            digest = "sha256:" + d.name
            if digest in in_use:
                continue
            shutil.rmtree(d, ignore_errors=True)
            _drop_unlinked(self.files)
            freed, total = total, _disk_usage(base, self.files)
            evicted.append(digest)
            log.info("evicted artifact", extra={"digest": digest, "bytes": freed - total})
        return evicted
