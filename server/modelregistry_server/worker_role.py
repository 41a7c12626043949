"""What a server process knows about its place among `--workers` siblings.

Every worker serves RPCs, watches and its own read cache; a few duties must
run once per server whatever the number of workers (see duties.py), and a
commit in one worker wakes the others' watch hubs (see events/peer_wake.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WorkerRole:
    index: int
    count: int
    # Held by the one worker that runs the once-per-server duties.
    duties_lock: Path
    # Serializes schema upgrades between workers starting together.
    migrate_lock: Path
    # Abstract Unix socket names, one per worker, for commit wake-ups.
    peers: tuple[str, ...]
