"""The local store's files and its worker threads (see blobs.thread_jobs):
a reader closed while its read-ahead runs keeps the file open until the
read has landed, even when the closing is cancelled again, and closes it
after; an upload cancelled while its file is being opened lets go of it."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from modelregistry_server.blobs import open_blob_store


async def test_closing_a_reader_waits_out_its_read_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await open_blob_store(f"file://{tmp_path / 'blobs'}", None)
    data = os.urandom(4 << 20)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    upload = await store.begin_upload("u")
    await upload.write(data)
    await upload.commit(digest, len(data))

    entered, go = threading.Event(), threading.Event()
    fds: list[int] = []
    fd_state: list[str] = []
    pread = os.pread

    def slow_pread(fd: int, n: int, pos: int) -> bytes:
        if pos == 0:
            return pread(fd, n, pos)
        fds.append(fd)
        entered.set()
        go.wait(30)
        try:
            os.fstat(fd)
            fd_state.append("open")
        except OSError:
            fd_state.append("closed")
        return pread(fd, n, pos)

    monkeypatch.setattr(os, "pread", slow_pread)  # as local_blobs calls it
    reader: Any = store.open_reader(digest, 0, None, 1 << 20)
    first = await anext(reader)  # the next chunk is now being read ahead
    assert first == data[: 1 << 20]
    assert await asyncio.to_thread(entered.wait, 30)
    closing = asyncio.create_task(reader.aclose())
    for _ in range(2):
        await asyncio.sleep(0.05)
        closing.cancel()
    await asyncio.sleep(0.05)
    assert not closing.done(), "closing returned while the read was in flight"
    go.set()
    with pytest.raises(asyncio.CancelledError):
        await closing
    monkeypatch.undo()
    assert fd_state == ["open"]
    try:  # closed after all (or its number already taken by another file)
        target = os.readlink(f"/proc/self/fd/{fds[0]}")
    except FileNotFoundError:
        target = ""
    assert not target.endswith(digest.removeprefix("sha256:")), target
    await store.close()


async def test_an_upload_cancelled_while_its_file_opens_can_be_resumed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled while the worker thread creates and locks the staging file:
    the file is closed once the thread is done, so its lock does not keep
    the upload busy; the next attempt resumes it."""
    from modelregistry_server.blobs.local_io import lock_or_busy

    store = await open_blob_store(f"file://{tmp_path / 'blobs'}", None)
    entered, go = threading.Event(), threading.Event()

    def slow_lock(fd: int, upload_id: str) -> None:
        entered.set()
        go.wait(30)
        lock_or_busy(fd, upload_id)

    monkeypatch.setattr("modelregistry_server.blobs.local_blobs.lock_or_busy", slow_lock)
    begin = asyncio.create_task(store.begin_upload("u"))
    assert await asyncio.to_thread(entered.wait, 30)
    begin.cancel()
    await asyncio.sleep(0.05)
    go.set()
    with pytest.raises(asyncio.CancelledError):
        await begin
    monkeypatch.undo()
    upload = await store.resume_upload("u")  # UPLOAD_BUSY if the lock had leaked
    await upload.write(b"weights")
    await upload.commit("sha256:" + hashlib.sha256(b"weights").hexdigest(), 7)
    await store.close()
