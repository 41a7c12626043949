"""What the one upload class promises over any backend, pinned on a backend in memory:
only offsets the backend calls durable are acknowledged, nothing unverified is
published, a failed write leaves the upload closable, a resume rehashes."""

from __future__ import annotations

import asyncio
import hashlib
import sys
from collections.abc import AsyncGenerator, Sequence

import pytest
from modelregistry_server.blobs.base import Chunk
from modelregistry_server.blobs.staged_upload import StagedUpload
from modelregistry_server.domain.errors import DomainError, blob_store_full
from support.held_threads import HeldThread, cancel_twice_then_release


class MemoryStaging:
    """A `Staging` in memory that records what it is asked to do."""

    def __init__(self, *, durable_appends: bool = False, data: bytes = b"") -> None:
        self.block_size = 4
        self.durable_appends = durable_appends
        self.data = bytearray(data)
        self.calls: list[tuple[object, ...]] = []
        self.fail: BaseException | None = None
        self.released = 0

    async def append(self, offset: int, chunks: Sequence[Chunk], size: int, *, sync: bool) -> bool:
        self.calls.append(("append", offset, size, sync))
        if self.fail is not None:
            raise self.fail
        assert offset == len(self.data)
        self.data += b"".join(chunks)
        return sync or self.durable_appends

    async def read_back(self) -> AsyncGenerator[bytes, None]:
        for i in range(0, len(self.data), 3):
            yield bytes(self.data[i : i + 3])

    async def publish(self, digest: str) -> None:
        self.calls.append(("publish", digest))

    async def discard(self) -> None:
        self.calls.append(("discard",))
        self.data.clear()

    def release(self) -> None:
        self.released += 1


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("durable_appends", [False, True], ids=["file-like", "object-like"])
async def test_only_offsets_the_backend_calls_durable_are_acknowledged(
    durable_appends: bool,
) -> None:
    staging = MemoryStaging(durable_appends=durable_appends)
    upload = StagedUpload("u", staging)
    await upload.write(b"abcd")  # a full block goes to the backend, unsynced
    await upload.write(b"efgh")  # ...and the next one once the first has landed
    assert (upload.written, upload.offset) == (8, 4 if durable_appends else 0)
    assert await upload.flush() == 8 == upload.offset
    unsynced = [("append", 0, 4, False), ("append", 4, 4, False)]
    # A file needs a sync for what it already holds; objects are durable once stored.
    assert staging.calls == unsynced + ([] if durable_appends else [("append", 8, 0, True)])
    info = await upload.commit(sha(b"abcdefgh"), 8)
    assert (info.digest, info.size) == (sha(b"abcdefgh"), 8)
    assert staging.calls[-1] == ("publish", sha(b"abcdefgh"))
    assert staging.released == 1


@pytest.mark.parametrize("wrong", ["digest", "size"])
async def test_a_mismatch_discards_and_never_publishes(wrong: str) -> None:
    staging = MemoryStaging()
    upload = StagedUpload("u", staging)
    await upload.write(b"abcdef")
    with pytest.raises(DomainError) as exc:
        if wrong == "digest":
            await upload.commit(sha(b"abcdeF"), 6)
        else:
            await upload.commit(sha(b"abcdef"), 7)
    assert exc.value.reason == f"{wrong.upper()}_MISMATCH"
    assert not [c for c in staging.calls if c[0] == "publish"]
    assert staging.calls[-1] == ("discard",) and staging.released == 1
    with pytest.raises(DomainError) as finished:
        await upload.write(b"more")
    assert finished.value.reason == "UPLOAD_FINISHED"


async def test_a_failed_append_leaves_the_upload_unusable_but_closable() -> None:
    staging = MemoryStaging()
    staging.fail = blob_store_full()
    upload = StagedUpload("u", staging)
    await upload.write(b"abcd")
    with pytest.raises(DomainError) as exc:
        await upload.flush()
    assert exc.value.reason == "BLOB_STORE_FULL"
    assert upload.offset == 0
    with pytest.raises(DomainError) as again:
        await upload.write(b"e")
    assert again.value.reason == "BLOB_STORE_FULL"
    await upload.close()
    await upload.close()
    assert staging.released == 1
    assert not [c for c in staging.calls if c[0] in ("publish", "discard")]


async def test_resume_continues_the_hash_from_the_staged_bytes() -> None:
    staging = MemoryStaging(data=b"hello")
    upload = await StagedUpload.resume("u", staging)
    assert (upload.offset, upload.written) == (5, 5)
    await upload.write(b", world")
    info = await upload.commit(sha(b"hello, world"), 12)
    assert info.digest == sha(b"hello, world")
    assert staging.data == b"hello, world"


async def test_what_was_written_is_what_is_stored_even_if_the_caller_reuses_its_buffer() -> None:
    """Views of bytes are staged as they are; a buffer the caller may change
    (a bytearray or a view of one) is copied when written."""
    staging = MemoryStaging()
    staging.block_size = 1 << 20  # nothing reaches the backend before the flush
    upload = StagedUpload("u", staging)
    message = b"\x12\x04abcd"
    await upload.write(memoryview(message)[2:])  # a chunk inside a received message
    reused = bytearray(b"efgh")
    await upload.write(reused)
    reused[:] = b"XXXX"
    view = bytearray(b"ijkl")
    await upload.write(memoryview(view))
    view[:] = b"YYYY"
    assert await upload.flush() == 12
    assert bytes(staging.data) == b"abcdefghijkl"
    assert (await upload.commit(sha(b"abcdefghijkl"), 12)).digest == sha(b"abcdefghijkl")


async def test_a_small_chunk_does_not_pin_the_large_message_around_it() -> None:
    staging = MemoryStaging()
    staging.block_size = 1 << 30
    upload = StagedUpload("u", staging)
    padded = b"x" + bytes(4 << 20)  # one byte of data in a 4 MiB message
    before = sys.getrefcount(padded)
    await upload.write(memoryview(padded)[:1])
    assert sys.getrefcount(padded) == before  # the byte was copied out
    whole = bytes(range(256)) * 4096
    before = sys.getrefcount(whole)
    await upload.write(memoryview(whole)[3:])
    assert sys.getrefcount(whole) == before + 1  # most of it: held, not copied
    assert await upload.flush() == 1 + len(whole) - 3


async def test_closing_waits_for_the_write_in_flight_even_when_cancelled_again() -> None:
    """A stream cancelled (a client gone, then the server stopping) while a
    block is being written: close waits for the backend's thread before it
    releases the staging, so the file stays open under the write; the
    staging is released in the end."""
    held = HeldThread()
    seen_released: list[int] = []

    class ThreadedStaging(MemoryStaging):
        async def append(
            self, offset: int, chunks: Sequence[Chunk], size: int, *, sync: bool
        ) -> bool:
            def write() -> None:
                held.hold()
                seen_released.append(self.released)

            await asyncio.to_thread(write)
            return sync

    staging = ThreadedStaging()
    upload = StagedUpload("u", staging)
    await upload.write(b"abcd")  # one block goes to the backend's thread
    await held.reached()
    await cancel_twice_then_release(asyncio.create_task(upload.close()), held)
    assert seen_released == [0]
    assert staging.released == 1
