"""A download asks the kernel to write each batch to disk as it lands, so
the fsync before the rename does not write the whole file at the end
(see modelregistry.writeback)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import time
from pathlib import Path

import pytest
from modelregistry.writeback import start_writeback

_CACHESTAT = 451  # the syscall's number on every architecture (Linux 6.5+)
PAGE = 4096


class _Range(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _Stat(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_uint64)
        for name in ("cache", "dirty", "writeback", "evicted", "recently_evicted")
    ]


def dirty_pages(fd: int, length: int) -> int | None:
    """Pages of the file's first `length` bytes still dirty in the page
    cache; None where the kernel cannot tell (no cachestat)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    stat = _Stat()
    span = _Range(0, length)
    if libc.syscall(_CACHESTAT, fd, ctypes.byref(span), ctypes.byref(stat), 0) != 0:
        return None
    return int(stat.dirty)


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="Linux with glibc"
)
def test_written_pages_go_to_disk_without_waiting_for_the_fsync(tmp_path: Path) -> None:
    size = 64 << 20
    block = os.urandom(1 << 20)
    fd = os.open(tmp_path / "model.bin", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for i in range(size >> 20):
            os.pwrite(fd, block, i << 20)
        before = dirty_pages(fd, size)
        if before is None:
            pytest.skip("the kernel has no cachestat (Linux < 6.5) to observe dirty pages")
        if before < size // PAGE // 2:
            pytest.skip(f"this filesystem does not keep written pages dirty ({before})")
        assert start_writeback(fd, 0, size)
        deadline = time.monotonic() + 10
        while (left := dirty_pages(fd, size)) and left > before // 20:
            assert time.monotonic() < deadline, f"{left} of {before} pages still dirty"
            time.sleep(0.05)
    finally:
        os.close(fd)


def test_an_empty_range_asks_nothing(tmp_path: Path) -> None:
    """To the kernel a length of 0 means "to the end of the file"."""
    fd = os.open(tmp_path / "empty.bin", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        assert not start_writeback(fd, 0, 0)
    finally:
        os.close(fd)
