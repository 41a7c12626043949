"""Keep large transfer buffers out of the C allocator's arenas.

glibc serves a block at or above its mmap threshold with its own mapping
and returns it to the system when freed, but it raises that threshold to
the largest such block freed so far (up to 32 MiB). From then on blocks of
that size (an S3 segment of 16 MiB, joined on a worker thread) come from
per-thread arenas, and an arena keeps what it grew to. With a block in
flight on each worker thread in turn, the server's memory then grows with
the transfers it has served instead of staying flat. A fixed threshold
keeps the large blocks mapped and returned; 8 MiB stays above the 4 MiB
chunks and 1 MiB reads of the hot path, which are cheaper from the arenas.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform

log = logging.getLogger("modelreg.server")

MMAP_THRESHOLD_BYTES = 8 * 1024 * 1024
_M_MMAP_THRESHOLD = -3  # from glibc's malloc.h


def map_large_blocks() -> bool:
    """Fix glibc's mmap threshold; False (and nothing changed) elsewhere."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        done = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    except (OSError, AttributeError):
        done = False
    if not done:
        log.warning("could not set the allocator's mmap threshold; memory may creep")
    return done
