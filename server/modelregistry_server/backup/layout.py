"""A backup directory and the manifest of each snapshot in it.

    DEST/blobs/sha256/<ab>/<hex>          every blob any snapshot refers to,
                                          stored bytes as the blob store holds them
    DEST/snapshots/<id>/database.sqlite   or database.pgdump (pg_dump custom format)
    DEST/snapshots/<id>/manifest.json     written last: a snapshot without it
                                          is incomplete and never restored
    DEST/LATEST                           the id of the newest complete snapshot

Blobs are shared by the snapshots of one directory, so a second backup to
the same place copies only the blobs the first did not have (incremental by
digest). A blob file is written under a temporary name, hashed as it is
written, and renamed into place only when its sha256 is the digest: a blob
file that exists is complete and verified.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

FORMAT = 1
MANIFEST = "manifest.json"
LATEST = "LATEST"


class BackupError(Exception):
    """A backup or restore that cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class SnapshotManifest:
    """What one snapshot holds: enough to restore and to check the result."""

    snapshot_id: str
    created_at: str
    # "sqlite" or "postgresql": a snapshot restores into the same kind.
    database: str
    database_file: str
    database_sha256: str
    schema_revision: str
    # The event log's head in the snapshot: a restore ends at this revision.
    event_revision: int
    event_hash: str
    blobs: list[str] = field(default_factory=list)
    format: int = FORMAT


class BackupDir:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.snapshots = root / "snapshots"

    def blob_path(self, digest: str) -> Path:
        hex_ = digest.removeprefix("sha256:")
        return self.blobs / hex_[:2] / hex_

    def snapshot_dir(self, snapshot_id: str) -> Path:
        return self.snapshots / snapshot_id

    def write_manifest(self, manifest: SnapshotManifest) -> None:
        """The manifest, then LATEST: each written whole and renamed into place."""
        directory = self.snapshot_dir(manifest.snapshot_id)
        _write_atomic(directory / MANIFEST, json.dumps(asdict(manifest), indent=1).encode())
        _write_atomic(self.root / LATEST, manifest.snapshot_id.encode() + b"\n")

    def read_manifest(self, snapshot_id: str | None = None) -> SnapshotManifest:
        if snapshot_id is None:
            try:
                snapshot_id = (self.root / LATEST).read_text().strip()
            except FileNotFoundError:
                raise BackupError(f"{self.root} holds no complete backup (no {LATEST})") from None
        path = self.snapshot_dir(snapshot_id) / MANIFEST
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise BackupError(f"snapshot {snapshot_id} is incomplete or missing ({path})") from None
        if data.get("format") != FORMAT:
            raise BackupError(
                f"snapshot {snapshot_id} has format {data.get('format')}, not {FORMAT}"
            )
        return SnapshotManifest(**data)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
