"""Use cases of the event log: ListEvents and Watch.

Validates filters, revisions, time ranges and page tokens before anything
touches storage; listing reads the table, watching goes through the hub.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterable
from contextlib import aclosing
from dataclasses import dataclass

from modelregistry.v1.error_reasons import ErrorMetadataKey, ErrorReason

from ..domain import request_context
from ..domain.errors import InvalidArgument, OutOfRange
from ..domain.events import Event, EventType
from ..domain.names import ID_PATTERN, parse_model_name
from ..domain.request_context import Visible
from ..events.watch_hub import WatchHub
from ..events.watcher import Batch, EventFilter
from ..store.base import EventLog
from .page_tokens import Listing, PageTokens, coerce_page_size

# Any resource of a model: models/m, models/m/aliases/a, models/m/versions/3...
_RESOURCE = re.compile(rf"models/{ID_PATTERN}(?:/[a-z]+/[a-z0-9-]+)*")
_MAX_RESOURCE = 256
_EVENT_TYPES = frozenset(t.value for t in EventType)
_MAX_TYPES = 32


def parse_event_filter(model: str, resource: str, types: Iterable[str], prefix: str) -> EventFilter:
    if model:
        parse_model_name(model, f"{prefix}.model")
    if resource and (len(resource) > _MAX_RESOURCE or not _RESOURCE.fullmatch(resource)):
        raise InvalidArgument(
            ErrorReason.INVALID_NAME,
            f"{prefix}.resource must be a resource name such as models/fraud/aliases/production",
            f"{prefix}.resource",
        )
    wanted = frozenset(types)
    if len(wanted) > _MAX_TYPES:
        raise InvalidArgument(
            ErrorReason.INVALID_FIELD, f"at most {_MAX_TYPES} event types", f"{prefix}.types"
        )
    unknown = sorted(wanted - _EVENT_TYPES)
    if unknown:
        raise InvalidArgument(
            ErrorReason.INVALID_FIELD,
            f"unknown event type {unknown[0][:40]!r}; known: {', '.join(sorted(_EVENT_TYPES))}",
            f"{prefix}.types",
        )
    return EventFilter(model=model, resource=resource, types=wanted)


def _check_revision(revision: int) -> int:
    if revision < 0:
        raise InvalidArgument(
            ErrorReason.INVALID_FIELD, "start_revision must not be negative", "start_revision"
        )
    return revision


@dataclass(frozen=True)
class EventPage:
    events: Listing[Event]
    # The log's head when the page was read.
    revision: int


class Events:
    def __init__(self, event_log: EventLog, hub: WatchHub, tokens: PageTokens) -> None:
        self._log = event_log
        self._hub = hub
        self._tokens = tokens

    async def list_events(
        self,
        flt: EventFilter,
        start_revision: int,
        start_time_us: int,
        end_time_us: int,
        page_size: int,
        page_token: str,
    ) -> EventPage:
        """One page, in revision order, of events up to the head as it was
        when this page was read: on the last page, a caller that watches
        from `revision + 1` misses nothing."""
        _check_revision(start_revision)
        if start_time_us and end_time_us and end_time_us <= start_time_us:
            raise InvalidArgument(
                ErrorReason.INVALID_FIELD, "end_time must be after start_time", "end_time"
            )
        limit = coerce_page_size(page_size)
        scope = "|".join(
            [
                "ListEvents",
                flt.model,
                flt.resource,
                ",".join(sorted(flt.types)),
                str(start_revision),
                str(start_time_us),
                str(end_time_us),
            ]
        )
        cursor = self._tokens.decode(scope, page_token)
        if cursor is not None and not isinstance(cursor, int):
            raise InvalidArgument(
                ErrorReason.INVALID_PAGE_TOKEN, "page_token is malformed", "page_token"
            )
        head, oldest_kept = await self._log.head()
        if cursor is not None:
            after = cursor
        elif start_revision:
            after = start_revision - 1
        else:
            after = oldest_kept
        page = await self._log.read(
            after,
            limit,
            model=flt.model,
            resource=flt.resource,
            types=flt.types,
            start_time_us=start_time_us,
            end_time_us=end_time_us,
            upto=head,
            models=await request_context.visible_models(),
        )
        listing = Listing(page.items, page.more, lambda e: self._tokens.encode(scope, e.revision))
        return EventPage(listing, head)

    async def watch(self, flt: EventFilter, start_revision: int) -> AsyncIterator[Batch]:
        """The hub's stream; a start past the next revision to be written is
        refused (it would wait for events that may never come) rather than
        served. The head is read only when the hub has not seen that far,
        since another replica may have written what this one has not read.
        Checked before the stream is handed over, so that a caller who may
        see every model reads the hub's stream itself, through no layer."""
        _check_revision(start_revision)
        if start_revision > self._hub.revision + 1:
            head, _ = await self._log.head()
            if start_revision > head + 1:
                raise OutOfRange(
                    ErrorReason.REVISION_IN_FUTURE,
                    f"start_revision {start_revision} is past the log's head {head}; "
                    f"watch from at most {head + 1}",
                    {ErrorMetadataKey.HEAD_REVISION: str(head)},
                )
        ctx = request_context.current()
        visibility = ctx.visibility if ctx is not None else None
        stream = self._hub.watch(flt, start_revision)
        return stream if visibility is None else _visible(stream, visibility)


async def _visible(stream: AsyncIterator[Batch], visibility: Visible) -> AsyncIterator[Batch]:
    """Only the events of models the caller may see, decided per batch: a
    grant or a revocation takes effect on a running stream. Progress
    messages still flow, so the caller always knows where to resume."""
    async with aclosing(stream):  # type: ignore[type-var]
        async for batch in stream:
            models = await visibility.models()
            if models is None:
                yield batch
                continue
            allowed = {f"models/{m}" for m in models}
            kept = tuple(e for e in batch.events if e.model in allowed)
            yield batch if len(kept) == len(batch.events) else Batch(kept, batch.revision)
