"""The local store's files and its worker threads (see blobs.thread_jobs):
a reader closed while its read-ahead runs keeps the file open until the
read has landed, even when the closing is cancelled again, and closes it
after; an upload cancelled while its file is being opened lets go of it."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from modelregistry_server.blobs import open_blob_store
from modelregistry_server.blobs.local_io import lock_or_busy
from support.held_threads import HeldThread, cancel_twice_then_release, fd_state, names_file


async def test_closing_a_reader_waits_out_its_read_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await open_blob_store(f"file://{tmp_path / 'blobs'}", None)
    data = os.urandom(4 << 20)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    upload = await store.begin_upload("u")
    await upload.write(data)
    await upload.commit(digest, len(data))

    held = HeldThread()
    fds: list[int] = []
    seen: list[str] = []
    pread = os.pread

    def held_pread(fd: int, n: int, pos: int) -> bytes:
        if pos == 0:
            return pread(fd, n, pos)
        fds.append(fd)
        held.hold()
        seen.append(fd_state(fd))
        return pread(fd, n, pos)

    monkeypatch.setattr(os, "pread", held_pread)  # as local_blobs calls it
    reader: Any = store.open_reader(digest, 0, None, 1 << 20)
    assert await anext(reader) == data[: 1 << 20]  # the next chunk is being read ahead
    await held.reached()
    await cancel_twice_then_release(asyncio.create_task(reader.aclose()), held)
    monkeypatch.undo()
    assert seen == ["open"]
    assert not names_file(fds[0], digest.removeprefix("sha256:")), "the blob file leaked"
    await store.close()


async def test_an_upload_cancelled_while_its_file_opens_can_be_resumed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled while the worker thread creates and locks the staging file:
    the file is closed once the thread is done, so its lock does not keep
    the upload busy; the next attempt resumes it."""
    store = await open_blob_store(f"file://{tmp_path / 'blobs'}", None)
    held = HeldThread()

    def held_lock(fd: int, upload_id: str) -> None:
        held.hold()
        lock_or_busy(fd, upload_id)

    monkeypatch.setattr("modelregistry_server.blobs.local_blobs.lock_or_busy", held_lock)
    begin = asyncio.create_task(store.begin_upload("u"))
    await held.reached()
    begin.cancel()
    await asyncio.sleep(0.05)
    held.go()
    with pytest.raises(asyncio.CancelledError):
        await begin
    monkeypatch.undo()
    upload = await store.resume_upload("u")  # UPLOAD_BUSY if the lock had leaked
    await upload.write(b"weights")
    await upload.commit("sha256:" + hashlib.sha256(b"weights").hexdigest(), 7)
    await store.close()
