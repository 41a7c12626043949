"""Event retention: compacts the log to a time window, if one is configured.

Watchers asking for a compacted revision get OUT_OF_RANGE with the oldest
revision kept. Events that a queue relay has not yet published are never
compacted, so enabling retention can't lose an event on its way to the queue.
"""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy import func, select

from ..store.event_log import SqlEventLog
from ..store.tables import relay_cursors

log = logging.getLogger("modelreg.events")


async def unpublished_floor(log_: SqlEventLog) -> int | None:
    """The lowest relay cursor: events after it are still owed to a queue."""
    async with log_.engine.connect() as conn:
        value = (await conn.execute(select(func.min(relay_cursors.c.revision)))).scalar()
    return None if value is None else int(value)


async def compact_once(events: SqlEventLog, retention_s: float) -> int:
    before = int((time.time() - retention_s) * 1_000_000)
    return await events.compact(before, keep_after=await unpublished_floor(events))


async def compact_forever(
    events: SqlEventLog, retention_s: float, ready: asyncio.Event, interval_s: float = 3600.0
) -> None:
    await ready.wait()
    while True:
        try:
            compacted = await compact_once(events, retention_s)
            log.info("event log compacted", extra={"compacted_revision": compacted})
        except Exception:
            log.exception("event log compaction failed")
        await asyncio.sleep(interval_s)
