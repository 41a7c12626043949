"""Work that must run once per server, however many workers serve its port.

The event relay to NATS, checkpoint signing, event compaction and the expiry
of abandoned uploads are done by whichever worker holds an exclusive lock on
a file in the data directory. The others wait for the lock; the kernel drops
it when its holder exits, however it exits, so a surviving or restarted
worker takes the duties over within a second. A single-process server holds
nothing and runs them itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

log = logging.getLogger("modelreg.server")
RETRY_S = 0.5


class DutyLock:
    """The file lock; `held` returns once this process holds it, for good."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._fd: int | None = None
        self._held = asyncio.Event()
        self._waiting = False

    async def held(self) -> None:
        if self._path is None:
            return
        if not self._waiting:
            self._waiting = True
            asyncio.get_running_loop().create_task(self._acquire(self._path))
        await self._held.wait()

    async def _acquire(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(RETRY_S)
        self._fd = fd  # kept open: the lock lives as long as the process
        log.info("this worker runs the once-per-server duties", extra={"pid": os.getpid()})
        self._held.set()


async def as_duty(lock: DutyLock, work: Callable[[], Awaitable[None]]) -> None:
    """Run `work` once this process holds the duty lock."""
    await lock.held()
    await work()


@contextlib.asynccontextmanager
async def exclusive(path: Path | None) -> AsyncIterator[None]:
    """An exclusive file lock for the block (nothing when `path` is None),
    waited for off the event loop."""
    if path is None:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
