"""Large transfer buffers go back to the operating system when freed.

glibc serves an allocation above its mmap threshold with a mapping of its
own, returned at `free`. But the threshold moves: each time such a block is
freed it rises to that block's size (up to 32 MiB), after which multi-MB
chunk buffers come from the heap arenas of whichever thread made them and
stay in the process once freed. A server that received 4 MiB chunks on 64
upload streams that then went quiet kept about 300 MB that way (measured by
loadtest/bench_stalled.py: +310 MB, +108 MB with the threshold fixed).

Fixing the threshold at 2 MiB keeps that from happening while the 1 MiB
chunks of the steady data path stay in the arenas, reused without a page
fault per 4 KiB. Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("modelreg.server")

# mallopt's parameter number for M_MMAP_THRESHOLD (malloc.h).
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 2 * 1024 * 1024


def return_large_buffers(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold; False where there is no glibc to ask."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(_M_MMAP_THRESHOLD, threshold))
    if not done:
        log.warning("could not set the allocator's mmap threshold")
    return done
