"""How many transfers run at once, and how much blob data they may hold.

A download's memory is the chunk it is sending: the transport keeps a chunk
until the client's HTTP/2 flow control lets it out, so a client that stops
reading pins the chunk in flight (and its copies on the way: read buffer,
message, serialized bytes) for as long as it keeps the stream open. Three
rules bound what streams nobody reads can cost:

- A download sends small chunks until the client has taken `proven_bytes`,
  more than a flow-control window lets through unread, so a client that reads
  nothing never gets past small chunks.
- Past that, a stream asks a budget shared by every download for its
  preferred chunk size and holds it until it ends; when the budget is spent
  it carries on with small chunks, slower but never blocked.
- At most `max_downloads` and `max_uploads` streams at once in this process;
  past that a new one gets RESOURCE_EXHAUSTED (TOO_MANY_TRANSFERS) with a
  retry delay.

So stalled streams cost about `max_downloads` small chunks plus the budget,
whatever they do.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

from modelregistry.v1.error_reasons import ErrorMetadataKey, ErrorReason

from ..config import DEFAULTS
from ..domain.errors import ResourceExhausted

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True)
class TransferSettings:
    max_downloads: int = DEFAULTS.max_downloads
    max_uploads: int = DEFAULTS.max_uploads
    # Chunk bytes that proven downloads may hold in flight, across all streams.
    download_buffer_bytes: int = DEFAULTS.download_buffer_mib * MIB
    # Chunk size of a download until the client has proven it reads.
    small_chunk_bytes: int = 32 * KIB
    # Bytes a client takes before its download may use larger chunks: more
    # than the flow-control windows of common clients let through unread.
    proven_bytes: int = 16 * MIB
    # The largest chunk a proven download gets, whatever it asked for: larger
    # ones are no faster and cost more while a client is slow.
    large_chunk_bytes: int = 1 * MIB
    # A refused transfer is told to retry after about this long.
    retry_delay_s: float = 1.0


def too_many_transfers(kind: str, limit: int, retry_delay_s: float) -> ResourceExhausted:
    # Jittered, so that refused clients do not all come back at once.
    delay_ms = int(retry_delay_s * 1000 * random.uniform(1.0, 2.0))
    return ResourceExhausted(
        ErrorReason.TOO_MANY_TRANSFERS,
        f"this server runs at most {limit} {kind} streams at once; retry in {delay_ms} ms",
        {ErrorMetadataKey.RETRY_DELAY_MS: str(delay_ms), ErrorMetadataKey.LIMIT: str(limit)},
    )


class TransferLimits:
    """Admission of transfer streams and the shared download buffer budget.
    Used from the event loop's thread only (no locks needed)."""

    def __init__(self, settings: TransferSettings | None = None) -> None:
        self.settings = settings or TransferSettings()
        self._running = {"download": 0, "upload": 0}
        self.buffered = 0

    def download(self) -> AbstractContextManager[None]:
        return self._slot("download", self.settings.max_downloads)

    def upload(self) -> AbstractContextManager[None]:
        return self._slot("upload", self.settings.max_uploads)

    @contextmanager
    def _slot(self, kind: str, limit: int) -> Iterator[None]:
        if self._running[kind] >= limit:
            raise too_many_transfers(kind, limit, self.settings.retry_delay_s)
        self._running[kind] += 1
        try:
            yield
        finally:
            self._running[kind] -= 1

    @property
    def downloads(self) -> int:
        return self._running["download"]

    def take(self, size: int) -> bool:
        """Reserve `size` bytes of the download buffer, if that many are free."""
        if self.buffered + size > self.settings.download_buffer_bytes:
            return False
        self.buffered += size
        return True

    def give_back(self, size: int) -> None:
        self.buffered -= size
