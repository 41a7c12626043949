"""Artifact manifests: the files of a version, by relative path, size and digest.

A manifest is itself a blob, so a version's artifact digest covers every
byte of every file (what a signature will later cover). Paths are checked
strictly so that no manifest can make a client write outside its target
directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from modelregistry.v1.error_reasons import ErrorReason

from .digests import check_digest
from .errors import InvalidArgument

MEDIA_TYPE = "application/vnd.modelreg.manifest.v1+json"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_FILES = 100_000
MAX_PATH = 1024


@dataclass(frozen=True)
class ManifestFile:
    path: str
    size_bytes: int
    digest: str


@dataclass(frozen=True)
class Manifest:
    files: tuple[ManifestFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size_bytes for f in self.files)

    def to_json(self) -> bytes:
        """Canonical encoding: sorted paths, no whitespace, so equal file
        sets give equal digests."""
        body = {
            "schemaVersion": 1,
            "mediaType": MEDIA_TYPE,
            "files": [
                {"path": f.path, "size": f.size_bytes, "digest": f.digest}
                for f in sorted(self.files, key=lambda f: f.path)
            ],
        }
        return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def _invalid(message: str) -> InvalidArgument:
    return InvalidArgument(ErrorReason.INVALID_MANIFEST, f"manifest: {message}", "manifest")


def check_path(path: Any) -> str:
    if not isinstance(path, str) or not path or len(path) > MAX_PATH:
        raise _invalid("each path must be a non-empty string of at most 1024 characters")
    if path.startswith("/") or "\\" in path or "\x00" in path:
        raise _invalid(f"path {path[:80]!r} must be relative, with / as separator")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise _invalid(f"path {path[:80]!r} has an empty, '.' or '..' segment")
    if any(ord(c) < 32 for c in path):
        raise _invalid(f"path {path[:80]!r} has control characters")
    return path


def parse_manifest(data: bytes) -> Manifest:
    if len(data) > MAX_MANIFEST_BYTES:
        raise _invalid(f"at most {MAX_MANIFEST_BYTES} bytes")
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _invalid("not valid JSON") from None
    if not isinstance(body, dict) or body.get("schemaVersion") != 1:
        raise _invalid("expected an object with schemaVersion 1")
    entries = body.get("files")
    if not isinstance(entries, list) or not entries or len(entries) > MAX_FILES:
        raise _invalid(f"files must be a list of 1 to {MAX_FILES} entries")
    files: list[ManifestFile] = []
    seen: set[str] = set()
    for entry in entries:
        if not isinstance(entry, dict):
            raise _invalid("each file must be an object")
        path = check_path(entry.get("path"))
        if path in seen:
            raise _invalid(f"duplicate path {path[:80]!r}")
        seen.add(path)
        size = entry.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise _invalid(f"size of {path[:80]!r} must be a non-negative integer")
        digest = entry.get("digest")
        if not isinstance(digest, str):
            raise _invalid(f"digest of {path[:80]!r} must be a string")
        try:
            check_digest(digest, "digest")
        except InvalidArgument:
            raise _invalid(f"digest of {path[:80]!r} is not sha256:<64 hex>") from None
        files.append(ManifestFile(path, size, digest))
    # A file may not also be a directory of another (a and a/b).
    for path in seen:
        parts = path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in seen:
                raise _invalid(f"{path[:80]!r} is inside another file's path")
    return Manifest(tuple(files))
