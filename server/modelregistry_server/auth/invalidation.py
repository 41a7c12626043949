"""Keeping access caches honest across replicas.

Every replica follows the event log (the watch hub reads it). A policy
change, a model deleted (its policies go with it), or a token revoked
anywhere reaches each replica's hub within its poll interval (at
once on PostgreSQL through NOTIFY); this listener then drops what the
authorizer and the authenticator cached.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..domain.events import Event, EventType
from .authenticator import Authenticator
from .authorizer import Authorizer

# A deleted model takes its policies along (a model created later under the
# same name starts with none, so creating one changes no decision).
POLICY_EVENTS = frozenset({EventType.POLICY_SET.value, EventType.MODEL_DELETED.value})
REVOKED = EventType.SERVICE_ACCOUNT_TOKEN_REVOKED.value


def listener(
    authorizer: Authorizer, authenticator: Authenticator | None
) -> Callable[[Iterable[Event] | None], None]:
    """For WatchHub.add_listener: None means the hub lost track (reset all)."""

    def on_batch(batch: Iterable[Event] | None) -> None:
        if batch is None:
            authorizer.invalidate()
            if authenticator is not None:
                authenticator.clear()
            return
        stale = False
        for event in batch:
            if event.type in POLICY_EVENTS:
                stale = True
            elif event.type == REVOKED and authenticator is not None:
                authenticator.forget(event.resource.rsplit("/", 1)[-1])
        if stale:
            authorizer.invalidate()

    return on_batch
