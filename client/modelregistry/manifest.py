"""Artifact manifests on the client: built from a local tree, checked when pulled.

The encoding is the server's canonical one (sorted keys and paths, no
whitespace), so pushing the same tree twice yields the same manifest digest
and the server deduplicates it. Pulled manifests are checked again here:
the server validates what it accepts, but a client must not trust the
server (or whatever sits in between) to keep it inside its target directory.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import grpc

from .errors import DataLossError
from .v1.error_reasons import ErrorReason

MEDIA_TYPE = "application/vnd.modelreg.manifest.v1+json"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_PATH = 1024
DIGEST_PREFIX = "sha256:"
# hashlib releases the GIL on large updates: big reads keep a core busy hashing.
HASH_READ_BYTES = 8 * 1024 * 1024

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class ManifestFile:
    """One file of an artifact: relative POSIX path, size and content digest."""

    path: str
    size_bytes: int
    digest: str

    @property
    def hex(self) -> str:
        return self.digest.removeprefix(DIGEST_PREFIX)


@dataclass(frozen=True)
class Manifest:
    files: tuple[ManifestFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size_bytes for f in self.files)

    def to_json(self) -> bytes:
        """The canonical encoding: equal file sets give equal bytes, hence equal digests."""
        body = {
            "schemaVersion": 1,
            "mediaType": MEDIA_TYPE,
            "files": [
                {"path": f.path, "size": f.size_bytes, "digest": f.digest}
                for f in sorted(self.files, key=lambda f: f.path)
            ],
        }
        return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def digest_of(data: bytes) -> str:
    return DIGEST_PREFIX + hashlib.sha256(data).hexdigest()


def is_digest(value: str) -> bool:
    return _DIGEST.fullmatch(value) is not None


def _bad_manifest(message: str) -> DataLossError:
    return DataLossError(
        grpc.StatusCode.DATA_LOSS, ErrorReason.INVALID_MANIFEST, f"manifest: {message}"
    )


def path_problem(path: object) -> str | None:
    """Why `path` may not appear in a manifest, or None if it may.

    Relative, `/`-separated, no empty, `.` or `..` segment, no backslash,
    NUL or control character: the same rule the server enforces on push.
    """
    if not isinstance(path, str) or not path or len(path) > MAX_PATH:
        return "each path must be a non-empty string of at most 1024 characters"
    if path.startswith("/") or "\\" in path or any(ord(c) < 32 for c in path):
        return f"path {path[:80]!r} must be relative, with / as separator"
    if any(part in ("", ".", "..") for part in path.split("/")):
        return f"path {path[:80]!r} has an empty, '.' or '..' segment"
    return None


def check_path(path: object) -> str:
    """A pulled manifest path that stays inside the target directory, or DataLossError."""
    problem = path_problem(path)
    if problem is not None:
        raise _bad_manifest(problem)
    assert isinstance(path, str)
    return path


def target_path(root: Path, path: str) -> Path:
    """Where manifest `path` lands under `root`; refuses anything that escapes it."""
    target = root.joinpath(*PurePosixPath(check_path(path)).parts)
    resolved_root = root.resolve()
    if not target.resolve().is_relative_to(resolved_root):
        # A symlink already in `root` pointing elsewhere.
        raise _bad_manifest(f"path {path[:80]!r} leads outside {root}")
    return target


def parse_manifest(data: bytes) -> Manifest:
    """Decode and check a pulled manifest; DataLossError if it is not a valid one."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise _bad_manifest(f"larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _bad_manifest("not valid JSON") from None
    if not isinstance(body, dict) or body.get("schemaVersion") != 1:
        raise _bad_manifest("expected an object with schemaVersion 1")
    entries = body.get("files")
    if not isinstance(entries, list) or not entries:
        raise _bad_manifest("files must be a non-empty list")
    files: list[ManifestFile] = []
    seen: set[str] = set()
    for entry in entries:
        if not isinstance(entry, dict):
            raise _bad_manifest("each file must be an object")
        path = check_path(entry.get("path"))
        if path in seen:
            raise _bad_manifest(f"duplicate path {path[:80]!r}")
        seen.add(path)
        size = entry.get("size")
        digest = entry.get("digest")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise _bad_manifest(f"size of {path[:80]!r} must be a non-negative integer")
        if not isinstance(digest, str) or not is_digest(digest):
            raise _bad_manifest(f"digest of {path[:80]!r} is not sha256:<64 hex>")
        files.append(ManifestFile(path, size, digest))
    for path in seen:
        parts = path.split("/")
        if any("/".join(parts[:i]) in seen for i in range(1, len(parts))):
            raise _bad_manifest(f"{path[:80]!r} is inside another file's path")
    return Manifest(tuple(files))


def sha256_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> tuple[str, int]:
    """(digest, size) of a file, read in large blocks; blocking, run it in a thread."""
    hasher = hashlib.sha256()
    buf = bytearray(HASH_READ_BYTES)
    view = memoryview(buf)
    size = 0
    with path.open("rb", buffering=0) as f:
        while n := f.readinto(view):
            hasher.update(view[:n])
            size += n
            if on_bytes is not None:
                on_bytes(n)
    return DIGEST_PREFIX + hasher.hexdigest(), size


def local_files(path: Path) -> list[tuple[str, Path]]:
    """(manifest path, local path) of every regular file to push, sorted by manifest path.

    A single file is an artifact of one entry named after the file. Symbolic
    links are followed for files, as a model directory often links its shards.
    """
    if path.is_file():
        return [(path.name, path)]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or directory")
    found: list[tuple[str, Path]] = []
    for dirpath, _dirs, names in os.walk(path):
        for name in names:
            local = Path(dirpath) / name
            if local.is_file():
                found.append((local.relative_to(path).as_posix(), local))
    if not found:
        raise FileNotFoundError(f"{path}: no files to push")
    for rel, _ in found:
        if (problem := path_problem(rel)) is not None:
            raise ValueError(f"cannot push {path}: {problem}")
    return sorted(found)


async def build_manifest(
    files: list[tuple[str, Path]], on_bytes: Callable[[int], None] | None = None
) -> Manifest:
    """Hash every file off the event loop so that a caller's other tasks keep running."""
    entries = []
    for rel, local in files:
        digest, size = await asyncio.to_thread(sha256_file, local, on_bytes)
        entries.append(ManifestFile(rel, size, digest))
    return Manifest(tuple(entries))
