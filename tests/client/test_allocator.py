"""A download's chunk buffers are reused, not faulted in again, and handed
back to the system when the transfer ends (see modelregistry.allocator).
Each case runs in a fresh interpreter: the thresholds are per process and
glibc's defaults are what a new client starts with."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator only")

# Receives batches as a download does (32 chunk-sized bytes objects, the
# two batches a download holds), frees them, and counts the page faults of
# the batches after the first; then the resident size once it is over.
BATCHES = """
import asyncio, json, os, resource, sys
from modelregistry.allocator import transfer_buffers

def rss_kb():
    with open(f"/proc/{os.getpid()}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))

def batches(n):
    for _ in range(n):
        chunks = [os.urandom(1) * (1 << 20) for _ in range(32)]
        del chunks

def run():
    batches(1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    batches(20)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

async def tuned():
    async with transfer_buffers() as tuned:
        print(json.dumps({"tuned": tuned}))
        return run(), rss_kb() - base

base = rss_kb()
if sys.argv[1] == "tuned":
    faults, held = asyncio.run(tuned())
else:
    faults = run()
    held = rss_kb() - base
print(json.dumps({"faults": faults, "held_kb": held, "after_kb": rss_kb() - base}))
"""


def _run(mode: str, **env: str) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", BATCHES, mode],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    )
    result: dict[str, int] = {}
    for line in done.stdout.splitlines():
        result.update(json.loads(line))
    return result


def test_a_transfer_reuses_its_buffers_and_returns_them_at_the_end() -> None:
    pages = 20 * 32 * (1 << 20) // 4096
    default = _run("default")
    tuned = _run("tuned")
    assert tuned["tuned"]
    # glibc's defaults trim each freed batch and fault the next one in again.
    assert default["faults"] > pages // 2, default
    assert tuned["faults"] < pages // 10, tuned
    # The batch stayed in the heap for reuse, and went back when it ended.
    assert tuned["held_kb"] > 16_000, tuned
    assert tuned["after_kb"] < 8_000, tuned


def test_thresholds_the_user_chose_are_left_alone() -> None:
    """A process started with its own malloc thresholds keeps them: here
    the trim threshold glibc starts with, so the batches fault again."""
    pages = 20 * 32 * (1 << 20) // 4096
    chosen = _run("tuned", GLIBC_TUNABLES="glibc.malloc.trim_threshold=131072")
    assert not chosen["tuned"]
    assert chosen["faults"] > pages // 2, chosen
