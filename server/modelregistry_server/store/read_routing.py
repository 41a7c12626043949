"""Read transactions on PostgreSQL streaming replicas, never older than what
this server has seen.

A replica is fit for a read when it is healthy and has applied at least the
read's floor: the larger of the client's `modelreg-min-revision` and the
newest revision this server knows of (its own committed writes and every
event its watch hub has read from the primary). So a write followed by a
read through the same server sees the write, and a server never answers
from a state older than one it has already answered from.

What a replica has applied is its event log head (`event_log_head` is
replicated with every write), read by a poller every `poll_interval_s`
and again, on demand, while a read waits for a lagging replica. A read
waits at most `max_wait_s` for some replica to catch up, then runs on the
primary: for a replica, the primary is always a correct answer. A replica
that refuses connections or fails its poll is left out until a poll
succeeds again, and a read that cannot connect to it goes to the primary.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..domain import read_consistency
from ..domain.read_consistency import AppliedRevision
from .tables import H

log = logging.getLogger("modelreg.store.replicas")

POLL_INTERVAL_S = 0.2
CHECK_TIMEOUT_S = 1.0
_UNREACHABLE = (OperationalError, PoolTimeout, OSError, DBAPIError, TimeoutError)


@dataclass
class Replica:
    engine: AsyncEngine
    # host:port/database, for logs (never the password).
    label: str
    healthy: bool = False
    applied: int = -1

    async def check(self) -> None:
        """Read the replica's event head; a failure marks it unhealthy."""
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_S):
                async with self.engine.connect() as conn:
                    revision = (
                        await conn.execute(select(H.revision).where(H.id == 1))
                    ).scalar_one()
        except _UNREACHABLE as exc:
            self.down(exc)
            return
        if not self.healthy:
            log.info("read replica up", extra={"replica": self.label, "revision": revision})
        self.healthy = True
        self.applied = max(self.applied, int(revision))

    def down(self, exc: BaseException) -> None:
        if self.healthy:
            log.warning(
                "read replica down, reads go to the primary",
                extra={"replica": self.label, "error": type(exc).__name__},
            )
        self.healthy = False


@dataclass
class RoutingCounts:
    """Where read transactions ran (for tests and logs)."""

    replica: int = 0
    primary: int = 0
    fallbacks: dict[str, int] = field(default_factory=dict)


class ReadRouter:
    def __init__(
        self,
        primary: AsyncEngine,
        replicas: list[AsyncEngine],
        clock: AppliedRevision,
        max_wait_s: float,
        poll_interval_s: float = POLL_INTERVAL_S,
    ) -> None:
        self._primary = primary
        self.replicas = [Replica(e, _label(e)) for e in replicas]
        self.clock = clock
        self.max_wait_s = max_wait_s
        self.poll_interval_s = poll_interval_s
        self.counts = RoutingCounts()
        self._turn = itertools.count()

    async def run(self) -> None:
        """Learn the primary's head, then poll the replicas until cancelled."""
        while True:
            try:
                async with self._primary.connect() as conn:
                    head = (await conn.execute(select(H.revision).where(H.id == 1))).scalar_one()
                break
            except _UNREACHABLE:
                await asyncio.sleep(self.poll_interval_s)
        self.clock.advance(int(head))
        while True:
            await asyncio.gather(*(r.check() for r in self.replicas))
            await asyncio.sleep(self.poll_interval_s)

    async def close(self) -> None:
        for replica in self.replicas:
            await replica.engine.dispose()

    async def _pick(self, floor: int) -> Replica | None:
        """A healthy replica at `floor` or later, waiting up to `max_wait_s`
        for one; None: use the primary."""
        deadline = time.monotonic() + self.max_wait_s
        pause = 0.002
        checked = False
        while True:
            fit = [r for r in self.replicas if r.healthy and r.applied >= floor]
            if fit:
                return fit[next(self._turn) % len(fit)]
            lagging = [r for r in self.replicas if r.healthy]
            if not lagging:
                self._fallback("down")
                return None
            if checked:  # the first time, ask the replicas at once: they are usually there
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._fallback("lag")
                    return None
                await asyncio.sleep(min(pause, remaining))
                pause = min(pause * 2, 0.02)
            checked = True
            await asyncio.gather(*(r.check() for r in lagging))

    def _fallback(self, why: str) -> None:
        self.counts.fallbacks[why] = self.counts.fallbacks.get(why, 0) + 1

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A connection for one read: on a fit replica, else on the primary.
        The revision the read reflects (at least) goes to the call's record."""
        floor = max(read_consistency.required(), self.clock.revision)
        replica = await self._pick(floor)
        conn: AsyncConnection | None = None
        if replica is not None:
            try:
                conn = await replica.engine.connect().start()
            except _UNREACHABLE as exc:
                replica.down(exc)
                self._fallback("down")
                replica = None
        if conn is not None and replica is not None:
            self.counts.replica += 1
            read_consistency.note(replica.applied)
        else:
            conn = await self._primary.connect().start()
            self.counts.primary += 1
            read_consistency.note(self.clock.revision)
        try:
            yield conn
        except _UNREACHABLE as exc:
            if replica is not None:
                replica.down(exc)  # the next reads go elsewhere at once
            raise
        finally:
            await conn.close()


def _label(engine: AsyncEngine) -> str:
    url = make_url(str(engine.url))
    return f"{url.host}:{url.port or 5432}/{url.database}"
