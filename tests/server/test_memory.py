"""The server fixes glibc's mmap threshold, so multi-MB chunk buffers go
back to the system when freed (see modelregistry_server.allocator)."""

from __future__ import annotations

import platform

import pytest
from modelregistry_server import allocator


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator only")
def test_threshold_is_set_on_glibc() -> None:
    assert allocator.map_large_blocks()
