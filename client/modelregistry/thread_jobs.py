"""Waiting for work handed to threads, whatever the waiter's fate (SDK side;
the server keeps its own copy, as it imports nothing of the SDK but the
generated stubs).

A cancelled task can stop awaiting a worker thread's future, but the thread
runs on: a `pread` or `pwritev` in flight still uses its file descriptor.
Code that closes the file after the wait must therefore wait the thread
out even when it is cancelled meanwhile, or the descriptor is closed under
the call and may already name another file when the call lands.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any


async def wait_out(jobs: Sequence[asyncio.Future[Any]]) -> None:
    """Until every one of `jobs` is done, their outcomes ignored (and
    retrieved); a cancellation that came meanwhile is raised after."""
    cancelled = False
    while not all(job.done() for job in jobs):
        try:
            await asyncio.wait(jobs)
        except asyncio.CancelledError:
            cancelled = True
    for job in jobs:
        if not job.cancelled():
            job.exception()
    if cancelled:
        raise asyncio.CancelledError
