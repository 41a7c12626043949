"""Watch as an async iterator that outlives restarts and dropped connections.

The server promises revision order with no gaps; this side keeps that
promise across reconnects: it remembers the last revision it has seen
(from events and from progress messages) and resumes from the next one,
dropping anything at or below it should a server ever repeat itself.
REVISION_COMPACTED is not retried: the caller must re-list (the error says
from which revision).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc

from .core import call_metadata
from .errors import RegistryError, from_rpc_error
from .transport import RetryPolicy
from .v1 import event_service_pb2 as rpc
from .v1 import resources_pb2 as pb
from .v1.error_reasons import ErrorReason

if TYPE_CHECKING:
    from .v1.event_service_pb2_grpc import EventServiceAsyncStub

# Reasons after which the same watch can be resumed where it stopped.
RESUMABLE_REASONS = frozenset(
    {ErrorReason.WATCH_TOO_SLOW, ErrorReason.SHUTTING_DOWN, ErrorReason.NOT_READY}
)
# Codes of transport failures (no registry reason): a broken stream.
RESUMABLE_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.INTERNAL}
)


@dataclass(frozen=True)
class WatchFilter:
    """What to watch; empty fields match everything."""

    model: str = ""
    resource: str = ""
    types: tuple[str, ...] = ()

    def to_pb(self) -> rpc.EventFilter:
        return rpc.EventFilter(model=self.model, resource=self.resource, types=list(self.types))


def event_filter(model: str, resource: str, types: Iterable[str]) -> WatchFilter:
    """Model and resource as full names or short forms (`fraud`, `fraud/aliases/prod`)."""

    def full(name: str) -> str:
        return name if not name or name.startswith("models/") else f"models/{name}"

    return WatchFilter(full(model), full(resource), tuple(types))


def _resumable(error: RegistryError) -> bool:
    if error.reason in RESUMABLE_REASONS:
        return True
    return not error.reason and error.code in RESUMABLE_CODES


class Watch:
    """An async iterator of `WatchResponse`, resuming after failures.

    `revision` is the newest revision known to be fully delivered: after the
    iterator is dropped, a new watch from `revision + 1` continues exactly.
    """

    def __init__(
        self,
        stub: Callable[[], EventServiceAsyncStub],
        flt: WatchFilter,
        start_revision: int,
        retry: RetryPolicy,
        request_id: str | None = None,
        on_unavailable: Callable[[], None] = lambda: None,
    ) -> None:
        """`on_unavailable`: the server went away (e.g. the client's
        failover to its next address, see Core.failover)."""
        if start_revision < 0:
            raise ValueError("start_revision must not be negative")
        self._stub = stub
        self._on_unavailable = on_unavailable
        self._filter = flt
        self._retry = retry
        self._metadata = call_metadata(request_id)
        self.revision = start_revision - 1 if start_revision else 0
        self._from_now = start_revision == 0
        self.reconnects = 0

    def _request(self) -> rpc.WatchRequest:
        start = 0 if self._from_now else self.revision + 1
        return rpc.WatchRequest(filter=self._filter.to_pb(), start_revision=start)

    def _accept(self, response: rpc.WatchResponse) -> rpc.WatchResponse:
        """Drop repeats and remember where to resume."""
        fresh = [e for e in response.events if e.revision > self.revision]
        if len(fresh) != len(response.events):
            response = rpc.WatchResponse(events=fresh, revision=response.revision)
        if fresh:
            self.revision = fresh[-1].revision
        self.revision = max(self.revision, response.revision)
        self._from_now = False
        return response

    async def responses(self) -> AsyncIterator[rpc.WatchResponse]:
        """Every message, progress messages (no events) included."""
        attempt = 0
        while True:
            call = self._stub().Watch(self._request(), metadata=self._metadata)
            try:
                async for response in call:
                    attempt = 0
                    yield self._accept(response)
            except grpc.aio.AioRpcError as err:
                error = from_rpc_error(err)
                if not _resumable(error):
                    raise error from err
                if err.code() == grpc.StatusCode.UNAVAILABLE:
                    self._on_unavailable()
            finally:
                call.cancel()
            attempt += 1
            self.reconnects += 1
            await asyncio.sleep(self._retry.backoff(min(attempt, 16)))

    async def events(self) -> AsyncIterator[pb.Event]:
        """The events alone, one at a time."""
        async for response in self.responses():
            for event in response.events:
                yield event
