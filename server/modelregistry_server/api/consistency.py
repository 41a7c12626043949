"""Revision metadata on unary calls: `modelreg-min-revision` in, `modelreg-revision` out.

A client may send `modelreg-min-revision: N` (decimal) with any unary call;
the answer then reflects every event up to N at least. The server first
waits (up to `MIN_REVISION_WAIT_S`) until it knows of revision N (its
watch hub reads the primary's log within milliseconds of a commit, so this
also keeps its read cache from answering older), then the store runs the
read where revision N is applied (see store/read_routing.py). Every answer
carries `modelreg-revision: M` in its initial metadata: the revision it
reflects at least (for a write, the revision the write appended), which a
client passes as the next call's floor, here or on another server.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc
from modelregistry.v1.error_reasons import ErrorReason

from ..domain import read_consistency
from ..domain.errors import InvalidArgument
from ..store.read_routing import RevisionClock
from .handler_wrapping import Behavior, WrappingInterceptor, rewrap

MIN_REVISION_KEY = "modelreg-min-revision"
REVISION_KEY = "modelreg-revision"
MIN_REVISION_WAIT_S = 1.0
_MAX_REVISION = 2**63 - 1
_SERVICES = "/modelregistry.v1."


def parse_min_revision(metadata: Iterable[tuple[str, Any]] | None) -> int:
    """The floor the caller asked for (0: none); INVALID_MIN_REVISION if malformed."""
    for key, value in metadata or ():
        if key != MIN_REVISION_KEY:
            continue
        text = value if isinstance(value, str) else ""
        if not (text.isascii() and text.isdigit()) or len(text) > 19 or int(text) > _MAX_REVISION:
            raise InvalidArgument(
                ErrorReason.INVALID_MIN_REVISION,
                f"{MIN_REVISION_KEY} must be one decimal revision, 0 to {_MAX_REVISION}",
                MIN_REVISION_KEY,
            )
        return int(text)
    return 0


class ConsistencyInterceptor(WrappingInterceptor):
    """Reads the floor, waits for it, and answers with the revision reflected."""

    def __init__(self, clock: RevisionClock) -> None:
        self._clock = clock

    def wrap(self, handler: grpc.RpcMethodHandler[Any, Any], method: str) -> Any:
        if not method.startswith(_SERVICES):
            return handler
        return rewrap(handler, self._unary, lambda behavior, _rpc_type: behavior)

    def _unary(self, behavior: Behavior, rpc_type: str) -> Behavior:
        if rpc_type != "unary":
            return behavior
        clock = self._clock

        async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            floor = parse_min_revision(context.invocation_metadata())
            if floor > clock.known:
                await clock.wait_for(floor, MIN_REVISION_WAIT_S)
            known = clock.known
            record, token = read_consistency.begin(floor)
            try:
                response = await behavior(request, context)
            finally:
                read_consistency.end(token)
            revision = max(record.revision, known)
            await context.send_initial_metadata(((REVISION_KEY, str(revision)),))
            return response

        return wrapper
