"""The file an upload reads from stays open until the read in a worker
thread has landed, even when the upload is cancelled twice meanwhile, and
is closed after (see modelregistry.thread_jobs)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from modelregistry import uploads
from support.held_threads import HeldThread, cancel_twice_then_release, fd_state, names_file


async def test_a_cancelled_upload_waits_out_its_read_before_closing_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "weights.bin"
    size = 3 * uploads.BATCH_BYTES
    source.write_bytes(os.urandom(size))
    held = HeldThread()
    fds: list[int] = []
    seen: list[str] = []
    read_batch = uploads._read_batch

    def held_read_batch(src: Any, fd: int, offset: int, end: int, chunk: int) -> Any:
        if offset == 0:
            return read_batch(src, fd, offset, end, chunk)
        fds.append(fd)
        held.hold()
        seen.append(fd_state(fd))
        return read_batch(src, fd, offset, end, chunk)

    monkeypatch.setattr(uploads, "_read_batch", held_read_batch)
    batches: Any = uploads._chunks(source, 0, size, 1 << 20)
    await anext(batches)  # the next batch is now being read ahead
    await held.reached()
    await cancel_twice_then_release(asyncio.create_task(batches.aclose()), held)
    assert seen == ["open"]
    assert not names_file(fds[0], "weights.bin"), "the file leaked"
