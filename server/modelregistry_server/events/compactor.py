"""Event retention: compacts the log to a time window, if one is configured.

Watchers asking for a compacted revision get OUT_OF_RANGE with the oldest
revision kept. Events that a queue relay has not yet published are never
compacted (the event log's `compact` holds that line), so enabling retention
can't lose an event on its way to the queue.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ..store.base import EventLog

log = logging.getLogger("modelreg.events")


async def compact_once(events: EventLog, retention_s: float) -> int:
    """Compact what is older than the retention window; the compacted revision."""
    before = int((time.time() - retention_s) * 1_000_000)
    return await events.compact(before)


async def compact_forever(
    events: EventLog, retention_s: float, ready: asyncio.Event, interval_s: float = 3600.0
) -> None:
    await ready.wait()
    while True:
        try:
            compacted = await compact_once(events, retention_s)
            log.info("event log compacted", extra={"compacted_revision": compacted})
        except Exception:
            log.exception("event log compaction failed")
        await asyncio.sleep(interval_s)
