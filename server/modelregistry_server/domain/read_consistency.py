"""The revision a request must read at least, and the one its answer reflects.

The API layer opens one record per call (from the client's
`modelreg-min-revision`); the store raises `revision` as it learns what the
call saw (the database a read ran on was known to be at revision N; a write
appended revision N) and the API layer returns it as `modelreg-revision`.
Both are lower bounds: an answer reflects every event up to `revision`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from dataclasses import dataclass


class AppliedRevision:
    """The newest revision this server has applied (committed itself, read
    from the log, or, on a regional edge, copied from the primary), and
    waiting for one."""

    def __init__(self, revision: int = 0) -> None:
        self.revision = revision
        self._changed = asyncio.Event()

    def advance(self, revision: int) -> None:
        """Never goes back: a late, older report changes nothing."""
        if revision > self.revision:
            self.revision = revision
            self._changed.set()
            self._changed = asyncio.Event()

    async def wait_for(self, revision: int, timeout_s: float) -> bool:
        """Whether `revision` is applied within `timeout_s` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while revision > self.revision:
                    await self._changed.wait()
        return revision <= self.revision


@dataclass
class ReadConsistency:
    # The client's floor: 0 when it sent none.
    min_revision: int = 0
    # What the answer reflects, as far as this call learned (0: nothing yet).
    revision: int = 0


_current: contextvars.ContextVar[ReadConsistency | None] = contextvars.ContextVar(
    "modelreg_read_consistency", default=None
)


def begin(min_revision: int) -> tuple[ReadConsistency, contextvars.Token[ReadConsistency | None]]:
    record = ReadConsistency(min_revision=min_revision)
    return record, _current.set(record)


def end(token: contextvars.Token[ReadConsistency | None]) -> None:
    _current.reset(token)


def required() -> int:
    record = _current.get()
    return record.min_revision if record is not None else 0


def note(revision: int) -> None:
    record = _current.get()
    if record is not None and revision > record.revision:
        record.revision = revision
