"""The server fixes glibc's mmap and trim thresholds, so multi-MB chunk
buffers go back to the system when freed while chunk-sized ones are reused
(see modelregistry_server.allocator)."""

from __future__ import annotations

import os
import platform
import resource

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
