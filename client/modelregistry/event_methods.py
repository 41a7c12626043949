"""The event log methods of `RegistryClient`: listing and watching.

Kept apart from client.py so each stays small; `RegistryClient` inherits
them and supplies the core (channel, stubs, retry policy, unary calls).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

from .core import Core
from .v1 import event_service_pb2 as rpc
from .v1 import resources_pb2 as pb
from .watch import Watch, WatchFilter


class EventMethods:
    _core: Core

    async def list_events_page(
        self,
        *,
        model: str = "",
        resource: str = "",
        types: Iterable[str] = (),
        start_revision: int = 0,
        page_size: int = 0,
        page_token: str = "",
        request_id: str | None = None,
    ) -> rpc.ListEventsResponse:
        """One page of the event log in revision order; its `revision` is the
        head when it was read. RevisionCompactedError if `start_revision` is
        no longer kept."""
        request = rpc.ListEventsRequest(
            filter=WatchFilter(model, resource, tuple(types)).to_pb(),
            start_revision=start_revision,
            page_size=page_size,
            page_token=page_token,
        )
        return await self._core.call(
            self._core.stubs.events.ListEvents, request, request_id, read=True
        )

    async def list_events(
        self,
        *,
        model: str = "",
        resource: str = "",
        types: Iterable[str] = (),
        start_revision: int = 0,
        page_size: int = 0,
        request_id: str | None = None,
    ) -> AsyncIterator[pb.Event]:
        """Every matching event from `start_revision` (0: the oldest kept) on."""
        kinds, token = tuple(types), ""
        while True:
            page = await self.list_events_page(
                model=model,
                resource=resource,
                types=kinds,
                start_revision=start_revision,
                page_size=page_size,
                page_token=token,
                request_id=request_id,
            )
            for event in page.events:
                yield event
            token = page.next_page_token
            if not token:
                return

    def watch_stream(
        self,
        *,
        model: str = "",
        resource: str = "",
        types: Iterable[str] = (),
        start_revision: int = 0,
        request_id: str | None = None,
    ) -> Watch:
        """A resumable watch: iterate `.events()`, or `.responses()` to see
        progress messages too; `.revision` says where it stands."""
        flt = WatchFilter(model, resource, tuple(types))
        return Watch(
            lambda: self._core.stubs.events,
            flt,
            start_revision,
            self._core.retry,
            request_id,
            self._core.failover,
        )

    def watch(
        self,
        *,
        model: str = "",
        resource: str = "",
        types: Iterable[str] = (),
        start_revision: int = 0,
        request_id: str | None = None,
    ) -> AsyncIterator[pb.Event]:
        """Matching events as they commit, from `start_revision` (0: from now),
        in revision order with no gaps or repeats; reconnects and resumes by
        itself. Ends only with an error such as RevisionCompactedError."""
        return self.watch_stream(
            model=model,
            resource=resource,
            types=types,
            start_revision=start_revision,
            request_id=request_id,
        ).events()
