"""`modelreg admin backup` and `modelreg admin restore`, end to end.

Backup: snapshot the database (one instant: see db_sqlite / db_postgres),
read the referenced blobs from that same snapshot, copy the blobs the
backup directory lacks, and only then write the manifest. Blobs are
immutable and content-addressed, so copying them after the snapshot is
consistent: every blob the snapshot refers to was published before it was
referenced, and nothing rewrites it. A backup that dies half-way leaves no
manifest and is never restored.

Restore: put the snapshot where the new database goes, upgrade its schema,
drop the upload sessions (their staged bytes are not in a backup), upload
the blobs the new store lacks (each verified by its digest as it is
committed), then check the event chain and the head against the manifest.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import delete

from ..blobs.base import BlobStore
from ..blobs.encryption.stored_form import stored_form
from ..blobs.factory import open_blob_store
from ..config import ServerConfig
from ..private_files import private_dir
from ..store import migrate
from ..store.engine import is_sqlite, make_engine
from ..store.tables import uploads
from . import blob_copy, db_postgres, db_sqlite
from .layout import BackupDir, BackupError, SnapshotManifest
from .snapshot_sql import snapshot_facts, verify_event_chain


def _sha256_file(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(4 * 1024 * 1024):
            sha.update(chunk)
    return sha.hexdigest()


@dataclass(frozen=True)
class BackupResult:
    manifest: SnapshotManifest
    copy: blob_copy.CopyTally
    seconds: float


async def backup(config: ServerConfig, dest: Path) -> BackupResult:
    started = time.monotonic()
    url = config.resolved_database_url()
    out = BackupDir(dest)
    now = datetime.now(UTC)
    snapshot_id = now.strftime("%Y%m%dT%H%M%S.%fZ")
    directory = out.snapshot_dir(snapshot_id)
    private_dir(directory)
    if is_sqlite(url):
        kind, database_file = "sqlite", "database.sqlite"
        facts = await db_sqlite.dump(url, directory / database_file)
    else:
        kind, database_file = "postgresql", "database.pgdump"
        facts = await db_postgres.dump(url, directory / database_file)
    store = await open_blob_store(config.resolved_blob_store(), config.s3_endpoint_url)
    try:
        await _refuse_encrypted(store)
        tally = await blob_copy.store_to_backup(store, out, facts.blobs)
    finally:
        await store.close()
    if tally.missing:
        raise BackupError(
            f"the database refers to {len(tally.missing)} blobs the blob store does not have"
            f" (first: {tally.missing[0]}); the snapshot in {directory} is left incomplete"
        )
    manifest = SnapshotManifest(
        snapshot_id=snapshot_id,
        created_at=now.isoformat(),
        database=kind,
        database_file=database_file,
        database_sha256=_sha256_file(directory / database_file),
        schema_revision=facts.schema_revision,
        event_revision=facts.event_revision,
        event_hash=facts.event_hash,
        blobs=facts.blobs,
    )
    out.write_manifest(manifest)
    return BackupResult(manifest, tally, time.monotonic() - started)


@dataclass(frozen=True)
class RestoreResult:
    manifest: SnapshotManifest
    copy: blob_copy.CopyTally
    events_checked: int
    seconds: float


async def restore(config: ServerConfig, source: Path, snapshot_id: str | None) -> RestoreResult:
    started = time.monotonic()
    backup_dir = BackupDir(source)
    manifest = backup_dir.read_manifest(snapshot_id)
    snapshot_file = backup_dir.snapshot_dir(manifest.snapshot_id) / manifest.database_file
    if _sha256_file(snapshot_file) != manifest.database_sha256:
        raise BackupError(f"{snapshot_file} does not match its manifest's checksum")
    url = config.resolved_database_url()
    kind = "sqlite" if is_sqlite(url) else "postgresql"
    if kind != manifest.database:
        raise BackupError(
            f"snapshot {manifest.snapshot_id} is a {manifest.database} database;"
            f" restore it into a {manifest.database} --database-url"
        )
    private_dir(config.data_dir)
    if kind == "sqlite":
        db_sqlite.restore(snapshot_file, url)
    else:
        await db_postgres.restore(snapshot_file, url)
    engine = make_engine(url, pool_size=1)
    try:
        await migrate.upgrade(engine)
        async with engine.begin() as conn:
            # Upload sessions point at staged bytes no backup holds: clients
            # start those uploads again.
            await conn.execute(delete(uploads))
        store = await open_blob_store(config.resolved_blob_store(), config.s3_endpoint_url)
        try:
            await _refuse_encrypted(store)
            tally = await blob_copy.backup_to_store(backup_dir, store, manifest.blobs)
        finally:
            await store.close()
        async with engine.connect() as conn:
            facts = await snapshot_facts(conn)
            checked, broken = await verify_event_chain(conn)
    finally:
        await engine.dispose()
    if broken is not None:
        raise BackupError(f"the restored event chain breaks at revision {broken}")
    if (facts.event_revision, facts.event_hash) != (manifest.event_revision, manifest.event_hash):
        raise BackupError(
            f"the restored event head is {facts.event_revision}, the snapshot's"
            f" {manifest.event_revision}"
        )
    missing = sorted(set(manifest.blobs) - set(facts.blobs))
    if set(facts.blobs) - set(manifest.blobs) or missing:
        raise BackupError("the restored database refers to other blobs than the snapshot did")
    return RestoreResult(manifest, tally, checked, time.monotonic() - started)


async def _refuse_encrypted(store: BlobStore) -> None:
    """Blobs are copied and checked by their content digest, which encrypted
    blobs (encryption at rest) do not hash to as stored; copying them through
    the keyring would put plaintext in the backup. Until backups carry the
    stored form, such a store is refused rather than half copied."""
    if await (await stored_form(store)).is_encrypted():
        raise BackupError(
            "the blob store holds encrypted blobs (--encryption-keyring), which backups"
            " do not carry yet: back up the blob directory or bucket as it is, and the"
            " keyring, beside this command's database snapshot"
        )
