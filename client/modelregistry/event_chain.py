"""Checking the event log's hash chain from the client side.

Each event's `hash` is the SHA-256 (lowercase hex) of its fields joined by
newlines, the previous event's hash last (see `Event` in resources.proto),
so a row edited or deleted in the database breaks the chain at that
revision. The client recomputes it independently of the server's code.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from .v1 import resources_pb2 as pb

GENESIS_HASH = "0" * 64


def event_hash(event: pb.Event, prev_hash: str) -> str:
    time_us = event.time.seconds * 1_000_000 + event.time.nanos // 1000
    text = "\n".join(
        [
            str(event.revision),
            event.type,
            event.resource,
            event.model,
            event.actor,
            str(time_us),
            event.before_json,
            event.after_json,
            prev_hash,
        ]
    )
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class ChainReport:
    checked: int = 0
    first_revision: int = 0
    last_revision: int = 0
    # The first revision whose hash or link does not hold; 0 if none.
    broken_at: int = 0
    reason: str = ""
    # True when older events were compacted away: the first event's link to
    # its predecessor can only be taken on trust.
    starts_after_compaction: bool = False


async def verify_events(events: AsyncIterator[pb.Event]) -> ChainReport:
    report = ChainReport()
    expected: str | None = None
    async for event in events:
        if report.checked == 0:
            report.first_revision = event.revision
            if event.revision == 1:
                expected = GENESIS_HASH
            else:
                report.starts_after_compaction = True
        if expected is not None and event.prev_hash != expected:
            report.broken_at, report.reason = event.revision, "prev_hash does not match"
            return report
        if event_hash(event, event.prev_hash) != event.hash:
            report.broken_at, report.reason = event.revision, "hash does not match its fields"
            return report
        expected = event.hash
        report.checked += 1
        report.last_revision = event.revision
    return report
