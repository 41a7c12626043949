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
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


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


async def on_file(func: Callable[..., T], /, *args: Any) -> T:
    """`asyncio.to_thread` for a call on a file descriptor the caller closes
    next: a caller cancelled meanwhile still waits for the call to return
    before the cancellation goes on."""
    job = asyncio.ensure_future(asyncio.to_thread(func, *args))
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:
        await wait_out((job,))
        raise
