"""Keep transfer buffers from piling up in the C allocator's arenas.

glibc serves a block at or above its mmap threshold with its own mapping
and returns it to the system when freed, but it raises that threshold to
the largest such block freed so far (up to 32 MiB). From then on blocks of
that size (an S3 segment of 16 MiB, joined on a worker thread) come from
per-thread arenas, and an arena keeps what it grew to. With a block in
flight on each worker thread in turn, the server's memory then grows with
the transfers it has served instead of staying flat. A fixed threshold
keeps the large blocks mapped and returned; 8 MiB stays above the 4 MiB
chunks and 1 MiB reads of the hot path, which are cheaper from the arenas.

Those smaller blocks are freed into the arenas of the threads that last
touched them (gRPC's, and the pool that hashes and writes), and an arena
gives back only what lies free at its top. A few hundred streams that each
moved a chunk or two leave the arenas full of free pages the process still
holds. `trim_forever` hands those pages back once a second; between trims
the hot path keeps its cheap allocations.

Fixing the mmap threshold also fixes glibc's trim threshold, at 128 KiB:
each time a chunk freed at an arena's top left more than that free, glibc
would hand the pages back at once and the next chunk would fault them in
again (a page fault, a zeroed page and a TLB shootdown per 4 KiB, about a
sixth of a download's server CPU). A trim threshold of 2 MiB keeps a chunk
or so per arena for reuse; larger ones saved a little more CPU but held
tens of MB across the arenas. The trims once a second still return it all.

Each thread that allocates gets an arena of its own, up to eight per core:
gRPC's threads and the worker pool's took a dozen or more, each with its
own free pages and its own cold cache. One arena per core holds less
(a push peaked 5-15 MB lower) and an upload spent about 15 % less server
CPU; reads and Watch ran as before.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import logging
import os
import platform

log = logging.getLogger("modelreg.server")

MMAP_THRESHOLD_BYTES = 8 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 2 * 1024 * 1024
TRIM_INTERVAL_S = 1.0
_M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def arena_limit() -> int:
    """One arena per core (glibc's default is eight), at least two."""
    return max(2, os.cpu_count() or 2)


def map_large_blocks() -> bool:
    """Fix glibc's mmap and trim thresholds and its number of arenas; False
    (and nothing changed) elsewhere."""
    libc = _glibc()
    try:
        done = (
            libc is not None
            and bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
            and bool(libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
            and bool(libc.mallopt(_M_ARENA_MAX, arena_limit()))
        )
    except AttributeError:
        done = False
    if not done:
        log.warning("could not set the allocator's mmap threshold; memory may creep")
    return done


def release_free_memory() -> bool:
    """Return the arenas' free pages to the system; False where there is no
    glibc to ask (the call is then a no-op)."""
    libc = _glibc()
    if libc is None:
        return False
    try:
        libc.malloc_trim(0)
    except AttributeError:
        return False
    return True


async def trim_forever(interval_s: float = TRIM_INTERVAL_S) -> None:
    """Release free memory every `interval_s` seconds, for as long as the
    server runs. Each trim takes well under a millisecond once the arenas
    are lean; it stops at once where glibc is absent."""
    if not release_free_memory():
        return
    while True:
        await asyncio.sleep(interval_s)
        release_free_memory()
