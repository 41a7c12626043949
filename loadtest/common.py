"""Shared pieces of the load tests: the seeded fleet's shape, tiny artifacts as
upload streams, percentiles, and the event loop the clients run on.

The scripts here import it as `common`: Python (and Locust, for the
locustfile) puts the script's own directory first on the module path.
Importing it also puts tests/ there, so that the scripts start servers and
make databases with the tests' own helpers (`support.processes`,
`support.postgres`); a script imports `common` before `support`.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import google_crc32c
from modelregistry.manifest import MEDIA_TYPE, Manifest, ManifestFile
from modelregistry.v1 import artifact_service_pb2 as apb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

T = TypeVar("T")
# The largest chunk the server takes in one upload message.
CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True)
class Fleet:
    """The seed's example fleet: `models` models of `versions` versions each.

    Per model: versions 1..`versions` (at least 3); version `artifact_version`
    (at most `versions` - 2) carries a small managed artifact, the others
    are READY through a `source_uri`.
    `production` (protected: approved versions only) points at the artifact
    version and `staging` at the one after it; every version but the newest
    is approved. The first `rollouts` models have a production rollout in
    progress towards `staging`'s version. Release engineers work on the first
    `hot` models; downloads go to the others, whose production alias stays
    on the artifact version.
    """

    models: int = 500
    versions: int = 10
    prefix: str = "fleet"
    hot: int = 20
    rollouts: int = 5
    artifact_version: int = 8
    # Bytes of each artifact version's file (4 KiB: metadata load tests;
    # the recovery drill seeds megabytes each, gigabytes in all).
    artifact_size: int = 4096

    def model_id(self, i: int) -> str:
        return f"{self.prefix}-{i:04d}"

    def model(self, i: int) -> str:
        return f"models/{self.model_id(i)}"

    def version(self, i: int, v: int) -> str:
        return f"{self.model(i)}/versions/{v}"

    def alias(self, i: int, alias: str) -> str:
        return f"{self.model(i)}/aliases/{alias}"

    @property
    def staging_version(self) -> int:
        return self.artifact_version + 1

    @property
    def approved_versions(self) -> range:
        """Versions approved by the seed: all but the newest."""
        return range(1, self.versions)

    @property
    def cold(self) -> range:
        """Models no release engineer touches (all of them if every one is hot)."""
        return range(self.hot, self.models) if self.hot < self.models else range(self.models)


# --- tiny artifacts as Upload streams ------------------------------------------------


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def artifact_bytes(label: str, size: int = 4096) -> bytes:
    """Deterministic, distinct content for `label` (a version name, a run id)."""
    seed = hashlib.sha256(label.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def blob_requests(
    data: bytes, *, version: str = "", media_type: str = ""
) -> list[apb.UploadRequest]:
    """A whole upload of a blob: start, chunks of at most `CHUNK` bytes, finish.

    If the server already has the blob it answers `started` then `finished`
    at once and ignores the rest, so the same messages serve both cases.
    """
    digest = digest_of(data)
    start = apb.UploadStart(
        size_bytes=len(data), digest=digest, version=version, media_type=media_type
    )
    chunks = [
        apb.UploadRequest(
            chunk=apb.UploadChunk(
                offset=at,
                data=data[at : at + CHUNK],
                crc32c=google_crc32c.value(data[at : at + CHUNK]),
            )
        )
        for at in range(0, len(data), CHUNK)
    ]
    return [
        apb.UploadRequest(start=start),
        *chunks,
        apb.UploadRequest(finish=apb.UploadFinish(digest=digest)),
    ]


def manifest_requests(version: str, path: str, data: bytes) -> list[apb.UploadRequest]:
    """Publishing `data` as the single file `path` of `version` (its manifest)."""
    files = (ManifestFile(path=path, size_bytes=len(data), digest=digest_of(data)),)
    body = Manifest(files=files).to_json()
    return blob_requests(body, version=version, media_type=MEDIA_TYPE)


def finished_version(responses: list[apb.UploadResponse]) -> apb.UploadFinished:
    """The `finished` message of an upload's responses (AssertionError if none)."""
    for r in responses:
        if r.WhichOneof("kind") == "finished":
            return r.finished
    raise AssertionError("the upload stream ended without `finished`")


# --- small figures ---------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (0..100) of `values`, nearest rank from below."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on uvloop where it is installed (as a deployment would), else asyncio."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    result: T = uvloop.run(coro)
    return result
