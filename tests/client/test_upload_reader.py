"""The file an upload reads from stays open until the read in a worker
thread has landed, even when the upload is cancelled twice meanwhile, and
is closed after (see modelregistry.thread_jobs)."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from modelregistry import uploads


async def test_a_cancelled_upload_waits_out_its_read_before_closing_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "weights.bin"
    size = 3 * uploads.BATCH_BYTES
    source.write_bytes(os.urandom(size))
    entered, go = threading.Event(), threading.Event()
    fds: list[int] = []
    fd_state: list[str] = []
    read_batch = uploads._read_batch

    def slow_read_batch(src: Any, fd: int, offset: int, end: int, chunk: int) -> Any:
        if offset == 0:
            return read_batch(src, fd, offset, end, chunk)
        fds.append(fd)
        entered.set()
        go.wait(30)
        try:
            os.fstat(fd)
            fd_state.append("open")
        except OSError:
            fd_state.append("closed")
        return read_batch(src, fd, offset, end, chunk)

    monkeypatch.setattr(uploads, "_read_batch", slow_read_batch)
    batches: Any = uploads._chunks(source, 0, size, 1 << 20)
    await anext(batches)  # the next batch is now being read ahead
    assert await asyncio.to_thread(entered.wait, 30)
    closing = asyncio.create_task(batches.aclose())
    for _ in range(2):
        await asyncio.sleep(0.05)
        closing.cancel()
    await asyncio.sleep(0.05)
    assert not closing.done(), "closing returned while the read was in flight"
    go.set()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert fd_state == ["open"]
    try:  # closed after all (or its number already taken by another file)
        target = os.readlink(f"/proc/self/fd/{fds[0]}")
    except FileNotFoundError:
        target = ""
    assert not target.endswith("weights.bin"), target
