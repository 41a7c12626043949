"""Let a download reuse its buffers instead of faulting them in again.

gRPC hands each received chunk over as a fresh 1 MiB bytes object, and a
download holds two 16 MiB batches of them at a time (one received, one on
its way to disk). glibc starts a process with a 128 KiB mmap threshold and
a trim threshold of twice that; it raises both only after it has freed a
block above the current threshold, and then only to that block's size.
A client that has seen nothing larger than a chunk trims its heap each
time a batch is freed at the top, and the next batch faults every page in
again: a page fault and a zeroed page per 4 KiB, about a tenth of the
client's CPU in a pull.

`transfer_buffers` sets the two thresholds to where glibc's own adjustment
ends up in any process that has freed a large block (32 MiB and 64 MiB),
once per process, and hands the free pages back when the last transfer in
the process ends, so a serving process does not keep a download's
buffers. Elsewhere than on Linux with glibc it does nothing, and it leaves
the thresholds alone where the process was started with its own (the
MALLOC_MMAP_THRESHOLD_ or MALLOC_TRIM_THRESHOLD_ variables, or a
glibc.malloc tunable in GLIBC_TUNABLES).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import os
import platform
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 2 * MMAP_THRESHOLD_BYTES
_M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
_M_MMAP_THRESHOLD = -3

_lock = threading.Lock()
_active = 0


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def _tuned_by_the_user() -> bool:
    env = os.environ
    return (
        "MALLOC_MMAP_THRESHOLD_" in env
        or "MALLOC_TRIM_THRESHOLD_" in env
        or "glibc.malloc." in env.get("GLIBC_TUNABLES", "")
    )


@functools.cache
def _raise_thresholds() -> bool:
    if _tuned_by_the_user():
        return False
    libc = _glibc()
    try:
        return (
            libc is not None
            and bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
            and bool(libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
        )
    except AttributeError:
        return False


def _release_free_memory() -> None:
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


@asynccontextmanager
async def transfer_buffers() -> AsyncIterator[bool]:
    """Around a transfer: the allocator keeps its buffers for reuse while
    any transfer runs and returns them after the last (in a worker thread:
    on a large heap that takes milliseconds). Yields whether the
    thresholds were set (False: not glibc, or set by the user)."""
    global _active
    tuned = _raise_thresholds()
    with _lock:
        _active += 1
    try:
        yield tuned
    finally:
        with _lock:
            _active -= 1
            last = _active == 0
        if tuned and last:
            await asyncio.to_thread(_release_free_memory)
