"""The admin commands' output: one line per step, exit 1 with the reason."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from ..config import ServerConfig
from ..domain.errors import DomainError
from .layout import BackupError
from .runner import backup as run_backup
from .runner import restore as run_restore


def backup(config: ServerConfig, dest: Path) -> int:
    try:
        result = asyncio.run(run_backup(config, dest))
    except (BackupError, DomainError, OSError) as exc:
        print(f"backup failed: {exc}", file=sys.stderr)
        return 1
    m = result.manifest
    print(f"snapshot {m.snapshot_id} ({m.database}) in {dest}")
    print(f"events up to revision {m.event_revision}, head {m.event_revision}:{m.event_hash}")
    print(f"{len(m.blobs)} referenced blobs: {result.copy}")
    print(f"took {result.seconds:.1f} s")
    return 0


def restore(config: ServerConfig, source: Path, snapshot_id: str | None) -> int:
    try:
        result = asyncio.run(run_restore(config, source, snapshot_id))
    except (BackupError, DomainError, OSError) as exc:
        print(f"restore failed: {exc}", file=sys.stderr)
        return 1
    m = result.manifest
    print(f"restored snapshot {m.snapshot_id} ({m.database}), schema upgraded to the latest")
    print(f"event chain verified: {result.events_checked} events, head {m.event_revision}")
    print(f"{len(m.blobs)} referenced blobs: {result.copy}")
    print(f"took {result.seconds:.1f} s")
    return 0
