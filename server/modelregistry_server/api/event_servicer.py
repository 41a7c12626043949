"""EventService over gRPC: parse the request, call the use case, convert the result."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import lru_cache
from typing import Any

from google.protobuf import timestamp_pb2
from modelregistry.v1 import event_service_pb2 as rpc
from modelregistry.v1 import event_service_pb2_grpc as rpc_grpc
from modelregistry.v1 import resources_pb2 as pb

from ..domain.events import Event
from ..events.watcher import Batch, EventFilter
from ..service.events import Events, parse_event_filter
from .convert import timestamp, timestamp_us

Ctx = Any  # grpc.aio.ServicerContext


@lru_cache(maxsize=4096)
def event_to_pb(e: Event) -> pb.Event:
    """Cached: a live event goes out to every watcher of it, built once."""
    return pb.Event(
        revision=e.revision,
        type=e.type,
        resource=e.resource,
        model=e.model,
        actor=e.actor,
        time=timestamp(e.time_us),
        before_json=e.before_json,
        after_json=e.after_json,
        prev_hash=e.prev_hash,
        hash=e.hash,
    )


@lru_cache(maxsize=64)
def _shared_response(batch: Batch) -> rpc.WatchResponse:
    """One message per hub read and filter, sent to every watcher of it
    (batches hash by identity, so this costs a dict lookup)."""
    return rpc.WatchResponse(events=[event_to_pb(e) for e in batch.events], revision=batch.revision)


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
        return rpc.ListEventsResponse(
            events=[event_to_pb(e) for e in page.events],
            next_page_token=page.next_page_token,
            revision=page.revision,
        )

    async def Watch(
        self, request: rpc.WatchRequest, context: Ctx
    ) -> AsyncIterator[rpc.WatchResponse]:
        stream = self._events.watch(_filter(request), request.start_revision)
        async for batch in stream:
            if batch.shared:
                yield _shared_response(batch)
            else:
                events = [event_to_pb(e) for e in batch.events]
                yield rpc.WatchResponse(events=events, revision=batch.revision)
