"""Holding a worker thread mid-call, to see what its caller does meanwhile.

A `HeldThread` is a gate that the patched function waits at: the test
learns when the thread is there (`reached`), does what it wants to the task
around it (cancel it twice, typically), and lets the thread go on (`go`).
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

import pytest


class HeldThread:
    def __init__(self) -> None:
        self._there, self._go = threading.Event(), threading.Event()

    def hold(self) -> None:
        """Called in the worker thread: wait here until `go` (at most 30 s)."""
        self._there.set()
        self._go.wait(30)

    async def reached(self) -> None:
        assert await asyncio.to_thread(self._there.wait, 30), "the thread never got there"

    def go(self) -> None:
        self._go.set()


async def cancel_twice_then_release(task: asyncio.Task[Any], held: HeldThread) -> None:
    """Cancel `task` twice while `held` keeps its thread; the task must still
    be waiting for the thread, and end cancelled once it is released."""
    for _ in range(2):
        await asyncio.sleep(0.05)
        task.cancel()
    await asyncio.sleep(0.05)
    assert not task.done(), "the task ended while its thread was still at work"
    held.go()
    with pytest.raises(asyncio.CancelledError):
        await task


def fd_state(fd: int) -> str:
    """ "open" or "closed", from the thread's own point of view."""
    try:
        os.fstat(fd)
    except OSError:
        return "closed"
    return "open"


def names_file(fd: int, suffix: str) -> bool:
    """Whether descriptor `fd` of this process is open on a file whose path
    ends with `suffix` (after a close, the number may name another file)."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}").endswith(suffix)
    except FileNotFoundError:
        return False
