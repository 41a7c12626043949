"""Artifact manifests: the files of a version, by relative path, size and digest.

A manifest is itself a blob, so a version's artifact digest covers every
byte of every file (what a signature will later cover). Paths are checked
strictly so that no manifest can make a client write outside its target
directory, and so that every manifest can be written out on Linux, macOS
and Windows alike: no segment longer than 255 bytes, none of Windows'
reserved names or characters, no two paths that the case-insensitive,
Unicode-normalising file systems of macOS and Windows would merge, and
nothing under the directory pulling clients keep their partial files in.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from modelregistry.v1.error_reasons import ErrorReason

from .digests import check_digest
from .errors import InvalidArgument

MEDIA_TYPE = "application/vnd.modelreg.manifest.v1+json"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_FILES = 100_000
MAX_PATH = 1024
MAX_SEGMENT_BYTES = 255
# A file's size fits a signed 64-bit column with room to spare.
MAX_FILE_BYTES = 1 << 50
# Where pulling clients stage files (see the SDK's downloads).
RESERVED_DIR = ".modelreg-partial"
_WINDOWS_RESERVED = re.compile(r"(?i)(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?")
_WINDOWS_FORBIDDEN = frozenset('<>:"|?*')


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
    segments = path.split("/")
    if _folded(segments[0]) == _folded(RESERVED_DIR):
        raise _invalid(f"path {path[:80]!r} is under {RESERVED_DIR}/, which clients reserve")
    for segment in segments:
        if len(segment.encode()) > MAX_SEGMENT_BYTES:
            raise _invalid(f"path {path[:80]!r} has a segment over {MAX_SEGMENT_BYTES} bytes")
        if (
            _WINDOWS_FORBIDDEN.intersection(segment)
            or segment.endswith((".", " "))
            or _WINDOWS_RESERVED.fullmatch(segment)
        ):
            raise _invalid(
                f"path {path[:80]!r}: segment {segment[:40]!r} cannot be a file name on Windows"
                ' (no < > : " | ? *, no trailing dot or space, no CON, NUL, COM1...)'
            )
    return path


def _folded(path: str) -> str:
    """The name macOS and Windows file systems see: case-folded, NFC-normalised."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", path).casefold())


def parse_manifest(data: bytes) -> Manifest:
    if len(data) > MAX_MANIFEST_BYTES:
        raise _invalid(f"at most {MAX_MANIFEST_BYTES} bytes")
    try:
        body = json.loads(data)
    except RecursionError:
        raise _invalid("nested too deeply") from None
    except ValueError:  # not JSON, not UTF-8, or an integer of thousands of digits
        raise _invalid("not valid JSON") from None
    if not isinstance(body, dict) or body.get("schemaVersion") != 1:
        raise _invalid("expected an object with schemaVersion 1")
    entries = body.get("files")
    if not isinstance(entries, list) or not entries or len(entries) > MAX_FILES:
        raise _invalid(f"files must be a list of 1 to {MAX_FILES} entries")
    files: list[ManifestFile] = []
    # By folded path: two entries equal there would be one file on a client.
    seen: dict[str, str] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            raise _invalid("each file must be an object")
        path = check_path(entry.get("path"))
        folded = _folded(path)
        if folded in seen:
            if seen[folded] == path:
                raise _invalid(f"duplicate path {path[:80]!r}")
            raise _invalid(
                f"paths {seen[folded][:80]!r} and {path[:80]!r} differ only in case or"
                " Unicode normalisation"
            )
        seen[folded] = path
        size = entry.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_FILE_BYTES:
            raise _invalid(f"size of {path[:80]!r} must be an integer from 0 to {MAX_FILE_BYTES}")
        digest = entry.get("digest")
        if not isinstance(digest, str):
            raise _invalid(f"digest of {path[:80]!r} must be a string")
        try:
            check_digest(digest, "digest")
        except InvalidArgument:
            raise _invalid(f"digest of {path[:80]!r} is not sha256:<64 hex>") from None
        files.append(ManifestFile(path, size, digest))
    # A file may not also be a directory of another (a and a/b).
    for folded, path in seen.items():
        parts = folded.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in seen:
                raise _invalid(f"{path[:80]!r} is inside another file's path")
    return Manifest(tuple(files))
