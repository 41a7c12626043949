"""SQLite snapshots through the online backup API.

`sqlite3.Connection.backup` with every page in one step holds a read
transaction for the whole copy: writers (WAL mode) carry on meanwhile, and
the copy is the database as of one commit, never a mix.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
from pathlib import Path

from sqlalchemy.engine import make_url

from ..store.engine import make_engine
from .layout import BackupError, fsync_dir
from .snapshot_sql import SnapshotFacts, snapshot_facts


def sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupError(f"{url}: an in-memory database cannot be backed up or restored")
    return Path(database)


def _copy(source: Path, target: Path) -> None:
    if not source.exists():
        raise BackupError(f"no database at {source}")
    src = sqlite3.connect(source)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()
    with target.open("rb") as f:
        os.fsync(f.fileno())


async def dump(url: str, target: Path) -> SnapshotFacts:
    """Copy the database at `url` to `target`; the facts come from the copy."""
    await asyncio.to_thread(_copy, sqlite_path(url), target)
    engine = make_engine(f"sqlite:///{target}")
    try:
        async with engine.connect() as conn:
            return await snapshot_facts(conn)
    finally:
        await engine.dispose()


def restore(source: Path, url: str) -> None:
    """Put the snapshot file where `url` points; refuses to overwrite a database."""
    target = sqlite_path(url)
    if target.exists() and target.stat().st_size > 0:
        raise BackupError(f"{target} exists: restore into a new database (move it away first)")
    target.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("-wal", "-shm", "-journal"):
        # Left by the database that was lost: SQLite would replay them into
        # the restored file.
        target.with_name(target.name + suffix).unlink(missing_ok=True)
    tmp = target.with_name(target.name + ".restoring")
    shutil.copyfile(source, tmp)
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, target)
    fsync_dir(target.parent)
