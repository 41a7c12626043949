"""EventService over gRPC: parse the request, call the use case, convert the result."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import lru_cache
from typing import Any

from google.protobuf import timestamp_pb2
from modelregistry.v1 import event_service_pb2 as rpc
from modelregistry.v1 import event_service_pb2_grpc as rpc_grpc
from modelregistry.v1 import resources_pb2 as pb

from ..domain.events import MAX_EVENT_BYTES, Event
from ..events.watcher import Batch, EventFilter
from ..service.events import Events, parse_event_filter
from .convert import timestamp, timestamp_us
from .paging import fit, split

Ctx = Any  # grpc.aio.ServicerContext
# Snapshots larger than any write can make today are left out (see event_to_pb).
SNAPSHOT_LIMIT_BYTES = MAX_EVENT_BYTES


@lru_cache(maxsize=4096)
def event_to_pb(e: Event) -> pb.Event:
    """Cached: a live event goes out to every watcher of it, built once."""
    # An event stored before events were bounded may be too large to send:
    # it goes without its snapshots, flagged, rather than break every list
    # and stream that reaches it.
    whole = len(e.before_json) + len(e.after_json) <= SNAPSHOT_LIMIT_BYTES
    return pb.Event(
        revision=e.revision,
        type=e.type,
        resource=e.resource,
        model=e.model,
        actor=e.actor,
        time=timestamp(e.time_us),
        before_json=e.before_json if whole else "",
        after_json=e.after_json if whole else "",
        prev_hash=e.prev_hash,
        hash=e.hash,
        snapshots_omitted=not whole,
    )


def _responses(batch: Batch) -> tuple[rpc.WatchResponse, ...]:
    """The batch as messages of bounded size. Each but the last says it has
    sent everything up to its own last event, which is where to resume."""
    runs = list(split(event_to_pb(e) for e in batch.events))
    if not runs:
        return (rpc.WatchResponse(revision=batch.revision),)
    return tuple(
        rpc.WatchResponse(
            events=run, revision=batch.revision if i == len(runs) - 1 else run[-1].revision
        )
        for i, run in enumerate(runs)
    )


@lru_cache(maxsize=64)
def _shared_responses(batch: Batch) -> tuple[rpc.WatchResponse, ...]:
    """One set of messages per hub read and filter, sent to every watcher of
    it (batches hash by identity, so this costs a dict lookup)."""
    return _responses(batch)


def _us(ts: timestamp_pb2.Timestamp, present: bool, field: str) -> int:
    return timestamp_us(ts, field) if present else 0


def _filter(request: rpc.ListEventsRequest | rpc.WatchRequest) -> EventFilter:
    f = request.filter
    return parse_event_filter(f.model, f.resource, f.types, "filter")


class EventServicer(rpc_grpc.EventServiceServicer):
    def __init__(self, events: Events) -> None:
        self._events = events

    async def ListEvents(
        self, request: rpc.ListEventsRequest, context: Ctx
    ) -> rpc.ListEventsResponse:
        page = await self._events.list_events(
            _filter(request),
            request.start_revision,
            _us(request.start_time, request.HasField("start_time"), "start_time"),
            _us(request.end_time, request.HasField("end_time"), "end_time"),
            request.page_size,
            request.page_token,
        )
        events, token = fit(page.events, event_to_pb)
        return rpc.ListEventsResponse(events=events, next_page_token=token, revision=page.revision)

    async def Watch(
        self, request: rpc.WatchRequest, context: Ctx
    ) -> AsyncIterator[rpc.WatchResponse]:
        stream = self._events.watch(_filter(request), request.start_revision)
        async for batch in stream:
            for response in _shared_responses(batch) if batch.shared else _responses(batch):
                yield response
