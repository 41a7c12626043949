"""Start writing a file's new pages to disk while more of it arrives.

A downloaded file is fsynced before it is renamed into place. Left to
itself the kernel keeps a fresh file's pages dirty for up to 30 seconds,
so that one fsync at the end writes the whole file while the download
waits: about a fifth of a large pull's time on a fast disk. Asking for
each batch to be written out as soon as it is in the page cache overlaps
that with the transfer; the pages stay cached, ready for the model to be
loaded, and the final fsync only waits for the last batch. It makes
nothing durable by itself and promises nothing: the fsync still decides,
and reports any write error.

On Linux with glibc this is `sync_file_range(SYNC_FILE_RANGE_WRITE)`;
elsewhere `start_writeback` does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform
from collections.abc import Callable

_SYNC_FILE_RANGE_WRITE = 2


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        func = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


def start_writeback(fd: int, offset: int, length: int) -> bool:
    """Start writing `length` bytes of `fd` from `offset` to disk without
    waiting; False where that cannot be asked (or the kernel declined).
    Called from a worker thread: ctypes releases the GIL for the call."""
    func = _sync_file_range()
    if func is None or length <= 0:
        return False
    return func(fd, offset, length, _SYNC_FILE_RANGE_WRITE) == 0
