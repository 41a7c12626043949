"""The watch hub: one per server process, between the event log and every
Watch stream.

The table is the truth. The hub keeps one cursor (`revision`) into it and,
when woken, reads what is new once, in revision order, and hands it to every
live watcher. Three things wake it: the commit hooks of this process's
stores (at once), PostgreSQL NOTIFY from other replicas' commits (see
pg_listener.py), and a slow poll in case either is lost. Appends serialize
on the log head's row lock, so a read that sees revision N sees every
revision before it: reading "after my cursor" never skips an event.

A watcher that cannot keep up never holds the hub back: its buffer is
bounded, and when it overflows the hub simply stops feeding it; the stream
then reads the table itself and rejoins once it has caught up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence

from modelregistry.v1.error_reasons import ErrorMetadataKey, ErrorReason

from ..domain import errors
from ..domain.events import Event
from ..observability import metrics
from ..store.base import EventLog
from .watcher import Batch, EventFilter, Watcher, WatchSettings

log = logging.getLogger("modelreg.watch")
MAX_RETRY_S = 2.0
MIN_PROGRESS_INTERVAL_S = 0.05


def too_slow(resume: int) -> errors.ResourceExhausted:
    return errors.ResourceExhausted(
        ErrorReason.WATCH_TOO_SLOW,
        f"the watcher fell too far behind; resume from revision {resume}",
        {ErrorMetadataKey.RESUME_REVISION: str(resume)},
    )


def shutting_down(resume: int) -> errors.Unavailable:
    return errors.Unavailable(
        ErrorReason.SHUTTING_DOWN,
        f"the server is shutting down; resume from revision {resume} on another",
        {ErrorMetadataKey.RESUME_REVISION: str(resume)},
    )


class WatchHub:
    def __init__(self, event_log: EventLog, settings: WatchSettings | None = None) -> None:
        self._log = event_log
        self.settings = settings or WatchSettings()
        self._watchers: set[Watcher] = set()
        self._wake = asyncio.Event()
        self._started = asyncio.Event()
        self._closed = False
        # Every event up to here has been read and handed to live watchers.
        self.revision = 0
        self._listeners: list[Callable[[Sequence[Event] | None], None]] = []

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)

    @property
    def max_lag(self) -> int:
        """Events read by the hub that the furthest-behind stream has not been sent."""
        return max((self.revision - w.position for w in self._watchers), default=0)

    def add_listener(self, listener: Callable[[Sequence[Event] | None], None]) -> None:
        """Also hand every batch of new events to `listener` (None: the log
        was compacted past the hub's cursor, so some changes went unseen)."""
        self._listeners.append(listener)

    def notify(self) -> None:
        """Something may have committed: read the table soon. Cheap and
        synchronous, so it can be a store's commit hook."""
        self._wake.set()

    def close(self) -> None:
        """End every stream with UNAVAILABLE (resume elsewhere) so that a
        draining server does not wait on streams that never end."""
        self._closed = True
        for watcher in self._watchers:
            watcher.wake()

    async def run(self) -> None:
        """The hub's loop; run it as a task once the schema is ready."""
        self.revision = await self._retrying_head()
        self._started.set()
        ticking = asyncio.create_task(self._tick_progress(), name="watch-progress")
        try:
            await self._follow()
        finally:
            ticking.cancel()

    async def _tick_progress(self) -> None:
        """Wake the streams that have sent nothing for a progress interval,
        so each sends a progress message: one timer for all of them rather
        than one per stream. A stream idle for the interval hears within
        half an interval more."""
        interval = self._progress_interval
        while not self._closed:
            await asyncio.sleep(interval / 2)
            due = time.monotonic() - interval
            for watcher in self._watchers:
                if watcher.last_sent <= due:
                    watcher.wake()

    async def _follow(self) -> None:
        delay = 0.1
        failing = False
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval_s)
            self._wake.clear()
            try:
                await self._read_new()
            except errors.Unavailable:
                if not failing:
                    log.warning("watch hub cannot read the event log; retrying")
                failing = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_S)
                self._wake.set()
                continue
            if failing:
                log.info("watch hub reads the event log again")
            failing, delay = False, 0.1

    async def _retrying_head(self) -> int:
        delay = 0.1
        while True:
            try:
                head, _ = await self._log.head()
                return head
            except errors.Unavailable:
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY_S)

    async def _read_new(self) -> None:
        while True:
            try:
                page = await self._log.read(self.revision, self.settings.page_size)
            except errors.OutOfRange:
                # Compacted past our cursor: jump to the head. Live watchers
                # then see a gap, re-read the table and get OUT_OF_RANGE.
                self.revision, _ = await self._log.head()
                for listener in self._listeners:
                    listener(None)
                return
            if not page.items:
                return
            prev, new = self.revision, page.items[-1].revision
            metrics.delivered(e.time_us for e in page.items)
            for listener in self._listeners:
                listener(page.items)
            shared: dict[EventFilter, Batch] = {}
            for watcher in self._watchers:
                watcher.offer(page.items, prev, new, shared)
            self.revision = new
            if not page.more:
                return

    async def watch(self, flt: EventFilter, start_revision: int) -> AsyncIterator[Batch]:
        """Matching events from `start_revision` (0: from now) on, forever.

        The first message comes at once: the replayed events, or for a watch
        "from now" a progress message saying where "now" is. Opening a watch
        costs no query unless there is something to replay (the first read
        also refuses a compacted start), so a fleet reconnecting at once
        after a restart does not stampede the database.
        """
        await self._started.wait()
        position = self.revision if start_revision == 0 else start_revision - 1
        w = Watcher(flt, position, self.settings.buffer_events)
        self._watchers.add(w)
        # One generator from here to the stream (no `async for` over
        # another): every layer costs each of thousands of streams per event.
        interval = self._progress_interval
        loop = asyncio.get_running_loop()
        try:
            if start_revision == 0:
                yield Batch((), position)
            while True:
                if self._closed:
                    raise shutting_down(w.position + 1)
                if w.queue:
                    yield w.pop()
                    w.last_sent = time.monotonic()
                    continue
                if not w.live:
                    if w.overflowed and self.revision - w.position > self.settings.max_lag:
                        raise too_slow(w.position + 1)
                    batch = await self._catch_up(w)
                    if batch.events:
                        yield batch
                        w.last_sent = time.monotonic()
                    continue
                if time.monotonic() - w.last_sent >= interval:
                    yield Batch((), w.position)
                    w.last_sent = time.monotonic()
                    continue
                await w.wait(loop)
        finally:
            self._watchers.discard(w)

    @property
    def _progress_interval(self) -> float:
        # A floor, so that an interval of 0 cannot turn the tick and every
        # idle stream into a busy loop.
        return max(self.settings.progress_interval_s, MIN_PROGRESS_INTERVAL_S)

    async def _catch_up(self, w: Watcher) -> Batch:
        """One page of the table for a watcher that is not live; makes it
        live once it has reached the hub's cursor."""
        upto = self.revision
        if w.position < upto:
            f = w.filter
            page = await self._log.read(
                w.position,
                self.settings.page_size,
                model=f.model,
                resource=f.resource,
                types=f.types,
                upto=upto,
            )
            w.position = page.items[-1].revision if page.more else upto
            events = tuple(page.items)
        else:
            events = ()
        if w.position >= self.revision:
            w.live, w.overflowed = True, False
        return Batch(events, w.position)
