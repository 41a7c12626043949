"""Responses bounded in bytes as well as in count.

A page of the largest legal resources at the largest page size would be
far over the message size limit, and a response that cannot be sent fails
the same way every time it is asked for. So a listing response takes items
until the next one would pass `MAX_PAGE_BYTES` and continues after the last
item it took; it always takes at least one, which fits because every
resource and event is bounded by construction (see `domain.validation` and
`domain.events.MAX_EVENT_BYTES`). A watch message is split the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from google.protobuf.message import Message

from ..service.page_tokens import Listing

# Half the message limit: a response's own fields and framing fit beside it.
MAX_PAGE_BYTES = 4 * 1024 * 1024

T = TypeVar("T")
M = TypeVar("M", bound=Message)


def fit(listing: Listing[T], to_pb: Callable[[T], M]) -> tuple[list[M], str]:
    """The items that fit in one response, and the token for the rest."""
    out: list[M] = []
    total = 0
    for item in listing.items:
        message = to_pb(item)
        size = message.ByteSize()
        if out and total + size > MAX_PAGE_BYTES:
            break
        out.append(message)
        total += size
    return out, listing.token_after(len(out))


def split(messages: Iterable[M]) -> Iterator[list[M]]:
    """`messages` in consecutive runs of at most `MAX_PAGE_BYTES` (one at least)."""
    run: list[M] = []
    total = 0
    for message in messages:
        size = message.ByteSize()
        if run and total + size > MAX_PAGE_BYTES:
            yield run
            run, total = [], 0
        run.append(message)
        total += size
    if run:
        yield run
