"""Where each outbox relay resumes, and who among the replicas may publish.

A relay's cursor is the revision up to which the queue has acknowledged every
event. It only moves forward: a relay that lost its leadership mid-batch and
saves an older cursor afterwards must not pull the shared cursor back (that
would only cause republishing, but there is no reason to allow it).

On PostgreSQL one replica publishes at a time: it holds a session-level
advisory lock on a connection of its own, so the lock goes away with the
process (a crash, a dropped connection) and another replica takes over.
SQLite is a single-process database, so there is nothing to elect.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain.events import Event
from .event_log import to_event
from .tables import C, E, events, relay_cursors
from .transactions import SqlBase, dialect_insert, now_us


def _lock_key(name: str) -> int:
    """A stable signed 64-bit key per relay name (PostgreSQL's bigint)."""
    digest = hashlib.sha256(f"modelreg.relay:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class SqlRelayCursors(SqlBase):
    async def get(self, name: str) -> int:
        """The persisted cursor of relay `name` (0: it never published)."""
        async with self._tx("get_relay_cursor") as conn:
            value = (
                await conn.execute(select(C.revision).where(C.name == name))
            ).scalar_one_or_none()
        return int(value or 0)

    async def advance(self, name: str, revision: int) -> None:
        """Move the cursor forward to `revision`; never backwards."""
        now = now_us()
        async with self._tx("advance_relay_cursor", write=True) as conn:
            stmt = (
                dialect_insert(conn, relay_cursors)
                .values(name=name, revision=revision, update_time_us=now)
                .on_conflict_do_nothing(index_elements=["name"])
            )
            await conn.execute(stmt)
            await conn.execute(
                update(relay_cursors)
                .where(C.name == name, C.revision < revision)
                .values(revision=revision, update_time_us=now)
            )

    async def event(self, revision: int) -> Event | None:
        """One event by revision (None if absent or compacted)."""
        async with self._tx("get_event") as conn:
            row = (await conn.execute(select(events).where(E.revision == revision))).one_or_none()
        return to_event(row) if row is not None else None

    @asynccontextmanager
    async def leadership(self) -> AsyncIterator[AdvisoryLock | None]:
        """A session of its own for the advisory lock (None on SQLite).

        Its connection is closed for good afterwards, never returned to the
        pool: a pooled session would keep the lock and lock this very relay
        out."""
        if self._dialect != "postgresql":
            yield None
            return
        async with self._engine.connect() as conn:
            try:
                yield AdvisoryLock(conn)
            finally:
                await conn.invalidate()


class AdvisoryLock:
    """Session-level advisory locks on one dedicated PostgreSQL connection."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def try_lead(self, name: str) -> bool:
        """Take the session-level lock for `name` without waiting."""
        conn = self._conn
        got = (await conn.execute(select(func.pg_try_advisory_lock(_lock_key(name))))).scalar_one()
        # End the implicit transaction: the lock is held by the session, and an
        # idle-in-transaction connection would pin old row versions.
        await conn.commit()
        return bool(got)

    async def still_leading(self) -> None:
        """Raise if the lock's connection is gone (and with it, the lock)."""
        await self._conn.execute(select(1))
        await self._conn.commit()
