"""What a backup reads from a database snapshot, and how it checks a restored one."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain.events import GENESIS_HASH, verify_chain
from ..store.event_log import to_event
from ..store.tables import E, H, events
from .referenced import referenced_blobs

VERIFY_BATCH = 5000


@dataclass(frozen=True)
class SnapshotFacts:
    schema_revision: str
    event_revision: int
    event_hash: str
    blobs: list[str]


async def snapshot_facts(conn: AsyncConnection) -> SnapshotFacts:
    """Schema revision, event head and referenced blobs, read through `conn`
    (inside the snapshot's transaction, so they describe exactly it)."""
    schema = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    head = (await conn.execute(select(H.revision, H.hash).where(H.id == 1))).one()
    return SnapshotFacts(
        schema_revision=str(schema or ""),
        event_revision=int(head.revision),
        event_hash=str(head.hash),
        blobs=await referenced_blobs(conn),
    )


async def verify_event_chain(conn: AsyncConnection) -> tuple[int, int | None]:
    """(events checked, first revision that breaks the chain or None), from
    the oldest kept event to the head, linked to the compaction point."""
    head = (await conn.execute(select(H.compacted_revision, H.compacted_hash))).one()
    expected: str | None = str(head.compacted_hash) if head.compacted_revision else GENESIS_HASH
    after = int(head.compacted_revision)
    checked = 0
    while True:
        rows = (
            await conn.execute(
                select(events).where(E.revision > after).order_by(E.revision).limit(VERIFY_BATCH)
            )
        ).all()
        if not rows:
            return checked, None
        batch = [to_event(r) for r in rows]
        broken = verify_chain(batch, expected)
        if broken is not None:
            return checked, broken
        checked += len(batch)
        expected = batch[-1].hash
        after = batch[-1].revision
