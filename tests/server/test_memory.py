"""The server tunes glibc's allocator: multi-MB chunk buffers go back to the
system when freed, chunk-sized ones are reused, and threads share one arena
per core (see modelregistry_server.allocator)."""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys

import pytest
from modelregistry_server import allocator
from support.procfs import status_kb


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator only")
def test_threshold_is_set_on_glibc() -> None:
    assert allocator.map_large_blocks()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator only")
def test_freed_arena_pages_go_back_to_the_system() -> None:
    """Blocks below the mmap threshold, freed out of order, leave free pages
    inside the arena; a trim returns them."""
    allocator.map_large_blocks()
    allocator.release_free_memory()
    before = status_kb(os.getpid(), "VmRSS")
    blocks = [bytearray(1 << 20) for _ in range(200)]  # 200 MiB below the threshold
    keep = blocks[-1]  # pins the top of the heap, so only a trim can give the rest back
    del blocks
    held = status_kb(os.getpid(), "VmRSS")
    assert allocator.release_free_memory()
    after = status_kb(os.getpid(), "VmRSS")
    assert held - before > 150_000, (before, held)
    assert after - before < 50_000, (before, held, after)
    assert len(keep) == 1 << 20


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator only")
def test_chunk_buffers_are_reused_without_faulting_pages_in_again() -> None:
    """A download allocates and frees a chunk-sized buffer per chunk: with
    glibc's default trim threshold each free at the heap's top handed the
    pages back and the next chunk faulted all of them in again."""
    allocator.map_large_blocks()
    allocator.release_free_memory()

    def chunk_cycle() -> None:
        blocks = [bytearray(1 << 20)]
        del blocks

    chunk_cycle()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        chunk_cycle()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    pages = 50 * (1 << 20) // 4096
    assert faults < pages // 10, (faults, pages)


ARENA_PROBE = """
import ctypes, sys, threading
from modelregistry_server import allocator
if sys.argv[1] == "capped":
    assert allocator.map_large_blocks()
libc = ctypes.CDLL("libc.so.6")
libc.open_memstream.restype = ctypes.c_void_p
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
start, done = threading.Barrier(17), threading.Barrier(17)
def work():
    start.wait()
    block = bytearray(200_000)  # below the mmap threshold: from the thread's arena
    done.wait()
    del block
threads = [threading.Thread(target=work) for _ in range(16)]
for t in threads:
    t.start()
start.wait()
done.wait()
buf, size = ctypes.c_char_p(), ctypes.c_size_t()
stream = libc.open_memstream(ctypes.byref(buf), ctypes.byref(size))
libc.malloc_info(0, stream)
libc.fclose(stream)
print(buf.value.decode().count("<heap nr="))
for t in threads:
    t.join()
"""


def _arenas(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", ARENA_PROBE, mode], capture_output=True, text=True, check=True
    )
    return int(done.stdout.strip())


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator only")
def test_threads_share_one_arena_per_core() -> None:
    """gRPC's and the worker pool's threads each took an arena of their own
    (up to eight per core), and each arena holds its own free pages."""
    assert _arenas("capped") <= allocator.arena_limit()
    assert _arenas("default") > allocator.arena_limit()  # what the cap changes
