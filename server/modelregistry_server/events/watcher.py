"""One watch stream's state, as the hub sees it.

A watcher is either *live* (the hub appends matching events to its bounded
buffer as they are read) or *catching up* (the hub leaves it alone and the
stream reads the table itself until it reaches the hub). `position` is the
revision up to which every matching event has been buffered or sent; it only
moves forward, so a stream can never repeat or skip an event.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..config import DEFAULTS
from ..domain.events import Event


@dataclass(frozen=True)
class EventFilter:
    """Which events a stream or a listing wants; empty fields match everything."""

    model: str = ""
    resource: str = ""
    types: frozenset[str] = frozenset()

    def matches(self, event: Event) -> bool:
        return (
            (not self.model or event.model == self.model)
            and (not self.resource or event.resource == self.resource)
            and (not self.types or event.type in self.types)
        )


@dataclass(frozen=True)
class WatchSettings:
    """Tuning of the watch hub; the defaults suit thousands of watchers."""

    # An idle stream gets a progress message this often (seconds).
    progress_interval_s: float = DEFAULTS.watch_progress_interval
    # Safety net: read the table this often even if nothing woke the hub.
    poll_interval_s: float = DEFAULTS.watch_poll_interval
    # Events a live watcher may have waiting to be sent before it is moved
    # to catching up from the table.
    buffer_events: int = 1000
    # A watcher that overflowed and is further behind than this is ended
    # with WATCH_TOO_SLOW rather than replayed from the table.
    max_lag: int = 10_000
    # Events per table read (hub and catch-up).
    page_size: int = 500


@dataclass(frozen=True, eq=False)
class Batch:
    """What a stream sends: events (none in a progress message) and the
    revision up to which every matching event has been sent.

    Compared by identity: watchers with the same filter share one batch per
    hub read, so the transport can build its message once for all of them."""

    events: tuple[Event, ...]
    revision: int
    # True for a live batch that several watchers may hold.
    shared: bool = False


@dataclass(eq=False)
class Watcher:
    filter: EventFilter
    position: int
    buffer_limit: int
    live: bool = False
    # Set when the buffer overflowed; cleared when the watcher is live again.
    overflowed: bool = False
    queue: deque[Batch] = field(default_factory=deque)
    queued: int = 0
    # When the stream last sent a message (time.monotonic()).
    last_sent: float = field(default_factory=time.monotonic)
    # What the stream awaits while it has nothing to send. A bare future,
    # not an asyncio.Event with a timeout: with thousands of streams, the
    # Event's and the timeout's bookkeeping on every message was a sixth of
    # the server's time per delivery (progress comes from the hub's tick).
    _waiter: asyncio.Future[None] | None = field(default=None, init=False, repr=False)

    def wake(self) -> None:
        """Make the stream look at its state again, if it is waiting. A wake
        while it is not waiting needs no record: the stream checks its state
        (queue, live, the hub's closing, the time) before every wait, with no
        await in between."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, loop: asyncio.AbstractEventLoop) -> None:
        """Until the next `wake`."""
        waiter = self._waiter = loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def offer(
        self, events: Sequence[Event], prev: int, new: int, shared: dict[EventFilter, Batch]
    ) -> None:
        """The hub read `events`, i.e. everything in (prev, new]. Called with
        no await in between, so it never interleaves with the stream's own
        bookkeeping. `shared` holds this read's batches by filter."""
        if not self.live:
            return
        if self.position < prev:  # cannot happen while live; be safe, re-read
            self.live = False
            self.wake()
            return
        if self.position == prev:  # the usual case: the same batch as its peers
            batch = shared.get(self.filter)
            if batch is None:
                matching = tuple(e for e in events if self.filter.matches(e))
                batch = shared[self.filter] = Batch(matching, new, shared=True)
        else:
            matching = tuple(
                e for e in events if e.revision > self.position and self.filter.matches(e)
            )
            batch = Batch(matching, new)
        if batch.events:
            if self.queued + len(batch.events) > self.buffer_limit:
                # Slow consumer: stop buffering, let it read the table on its own.
                self.live = False
                self.overflowed = True
                self.wake()
                return
            self.queue.append(batch)
            self.queued += len(batch.events)
            self.wake()
        self.position = max(self.position, new)

    def pop(self) -> Batch:
        batch = self.queue.popleft()
        self.queued -= len(batch.events)
        return batch
