"""One blob over several Download streams at once, each a range of it.

One stream is bound by one event loop's turn per message on each side;
several ranged streams keep more bytes in flight and let the server's and
the client's worker threads overlap. The blob is cut into `streams`
contiguous ranges (a server sends each stream small chunks until it has
proven it reads, so a few long ranges beat many short ones); each range is
received like a whole blob (CRC32C and offset per chunk, written in large
batches from a worker thread, its own retries), straight into its place in
the partial file.

The sha256 must see the bytes in order, so it follows behind: one task
hashes the contiguous prefix written so far, reading it back from the page
cache in large blocks, and notes how far it got in `<partial>.prefix`. That
note is what a later run resumes from (the file past it may have holes),
and only a file whose every byte was hashed and matched is published.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from .downloads import (
    PREFIX_SUFFIX,
    BlobDownload,
    BlobDownloader,
    OnOffset,
    _FileSink,
    _hash_prefix,
    check_digest,
    resume_point,
)
from .manifest import HASH_READ_BYTES
from .thread_jobs import on_file, wait_out

MIB = 1024 * 1024
# Each stream gets at least this much: below it, one stream is as fast.
MIN_RANGE_BYTES = 128 * MIB
MAX_STREAMS = 8
DEFAULT_MAX_STREAMS = 4
# The `.prefix` note is rewritten each time the hash has moved this far.
NOTE_EVERY_BYTES = 64 * MIB


def auto_streams(size: int, limit: int = DEFAULT_MAX_STREAMS, cores: int | None = None) -> int:
    """How many ranged streams suit a blob of `size` bytes: one per
    MIN_RANGE_BYTES, at most `limit`, and at most one per two cores. Every
    stream costs CPU on both sides (and the hash reads the file back), so
    on a machine with two cores or fewer, where client and server already
    use them all, one stream is the fastest (measured by
    loadtest/bench_oci_registry.py)."""
    cores = cores if cores is not None else (os.cpu_count() or 1)
    return max(1, min(limit, size // MIN_RANGE_BYTES, cores // 2))


class _Ranges:
    """Where each range's writes have got to, and the hash following them."""

    def __init__(self, bounds: list[tuple[int, int]], hasher: Any, hashed: int) -> None:
        self.bounds = bounds
        self.sinks: list[_FileSink] = []
        self.hasher = hasher
        self.hashed = hashed
        self.changed = asyncio.Event()
        # The hashing thread's work, awaited before the file is closed.
        self.inflight: asyncio.Future[None] | None = None

    def contiguous(self) -> int:
        """End of the prefix written without a hole."""
        end = self.hashed
        for (start, stop), sink in zip(self.bounds, self.sinks, strict=True):
            if start > end:
                break
            end = max(end, sink.pos)
            if sink.pos < stop:
                break
        return end


async def ranged_to_file(
    downloader: BlobDownloader,
    digest: str,
    size: int,
    partial: Path,
    streams: int,
    on_offset: OnOffset | None = None,
) -> BlobDownload:
    """Like `BlobDownloader.to_file`, over `streams` ranged streams."""
    await asyncio.to_thread(partial.parent.mkdir, parents=True, exist_ok=True)
    note = partial.with_name(partial.name + PREFIX_SUFFIX)
    fd = os.open(partial, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        have = await on_file(resume_point, fd, partial, size)
        hasher = await on_file(_hash_prefix, fd, have)
        await asyncio.to_thread(_write_note, note, have)
        step = -(-(size - have) // streams)
        bounds = [(s, min(size, s + step)) for s in range(have, size, step)]
        ranges = _Ranges(bounds, hasher, have)
        for start, _ in bounds:
            sink = _FileSink(fd, None, start, digest)
            sink.on_written = ranges.changed.set
            ranges.sinks.append(sink)
        progress = _Progress(ranges, on_offset)
        tasks = [
            asyncio.ensure_future(
                downloader.stream_range(sink, digest, size, stop, progress.report)
            )
            for sink, (_, stop) in zip(ranges.sinks, bounds, strict=True)
        ]
        hashing = asyncio.ensure_future(_follow(fd, ranges, size, note))
        try:
            await asyncio.gather(*tasks)
            ranges.changed.set()
            await hashing
        finally:
            for task in (*tasks, hashing):
                task.cancel()
            # Their threads write and read `fd`: all of them end before it closes.
            await wait_out((*tasks, hashing))
            if ranges.inflight is not None:
                await wait_out((ranges.inflight,))
        await on_file(os.fsync, fd)
    finally:
        os.close(fd)
    note.unlink(missing_ok=True)
    await check_digest(hasher, digest, partial)
    return BlobDownload(resumed_from=have, bytes_received=size - have)


class _Progress:
    """Reports the bytes received over all ranges as one offset."""

    def __init__(self, ranges: _Ranges, on_offset: OnOffset | None) -> None:
        self.ranges, self.on_offset = ranges, on_offset
        self.base = ranges.hashed

    def report(self, _: int) -> None:
        if self.on_offset is not None:
            got = sum(
                sink.received - start
                for sink, (start, _) in zip(self.ranges.sinks, self.ranges.bounds, strict=True)
            )
            self.on_offset(self.base + got)


async def _follow(fd: int, ranges: _Ranges, size: int, note: Path) -> None:
    """Hash the written prefix as it grows, noting how far it got."""
    noted = ranges.hashed
    while ranges.hashed < size:
        end = ranges.contiguous()
        if end <= ranges.hashed:
            ranges.changed.clear()
            if ranges.contiguous() <= ranges.hashed:
                await ranges.changed.wait()
            continue
        ranges.inflight = asyncio.ensure_future(
            asyncio.to_thread(_hash_range, fd, ranges.hasher, ranges.hashed, end)
        )
        await asyncio.shield(ranges.inflight)
        ranges.hashed = end
        if end - noted >= NOTE_EVERY_BYTES:
            await asyncio.to_thread(_write_note, note, end)
            noted = end


def _hash_range(fd: int, hasher: Any, start: int, end: int) -> None:
    pos = start
    while pos < end:
        block = os.pread(fd, min(HASH_READ_BYTES, end - pos), pos)
        if not block:
            raise OSError("partial file shrank while being read")
        hasher.update(block)
        pos += len(block)


def _write_note(note: Path, prefix: int) -> None:
    staged = note.with_name(note.name + ".new")
    staged.write_text(str(prefix))
    os.replace(staged, note)
