"""EventService over gRPC: parse the request, call the use case, convert the result.

Watch answers with bytes already serialized: a live batch goes out to every
stream whose filter it matched, so its messages are built and serialized
once per hub read and filter, and each stream sends the same bytes (its
method handler passes bytes through instead of serializing per stream).
"""

from __future__ import annotations

from contextlib import aclosing
from functools import lru_cache
from typing import Any

import grpc
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
SERVICE = "modelregistry.v1.EventService"
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


def _encoded(batch: Batch) -> tuple[bytes, ...]:
    return tuple(r.SerializeToString() for r in _responses(batch))


@lru_cache(maxsize=256)
def _shared_encoded(batch: Batch) -> tuple[bytes, ...]:
    """One set of serialized messages per hub read and filter, sent to every
    watcher of it (batches hash by identity, so this costs a dict lookup)."""
    return _encoded(batch)


def _passthrough(response: bytes | rpc.WatchResponse) -> bytes:
    """Watch's response serializer: its responses are serialized already."""
    return response if isinstance(response, bytes) else response.SerializeToString()


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

    async def Watch(  # type: ignore[override]  # bytes: see add_to_server
        self, request: rpc.WatchRequest, context: Ctx
    ) -> None:
        """Writes serialized WatchResponse messages (see `add_to_server`).
        With `context.write` rather than as an async generator: a message
        then goes straight to gRPC instead of through every interceptor's
        layer, which counts with a thousand streams per event."""
        stream = await self._events.watch(_filter(request), request.start_revision)
        # Closed here, not when collected: the hub forgets the watcher as
        # soon as the caller goes.
        async with aclosing(stream):  # type: ignore[type-var]
            async for batch in stream:
                for response in _shared_encoded(batch) if batch.shared else _encoded(batch):
                    await context.write(response)


def add_to_server(servicer: EventServicer, server: grpc.aio.Server) -> None:
    """Like the generated `add_EventServiceServicer_to_server`, except that
    Watch's responses pass through as the bytes the servicer made."""
    handlers = {
        "ListEvents": grpc.unary_unary_rpc_method_handler(
            servicer.ListEvents,
            request_deserializer=rpc.ListEventsRequest.FromString,
            response_serializer=rpc.ListEventsResponse.SerializeToString,
        ),
        "Watch": grpc.unary_stream_rpc_method_handler(
            servicer.Watch,
            request_deserializer=rpc.WatchRequest.FromString,
            response_serializer=_passthrough,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)  # type: ignore[attr-defined]
