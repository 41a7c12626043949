"""Who is calling and which request this is: for logs, traces, the audit
trail in the event log and (later) access control. Set by the API layer."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    method: str
    # The authenticated caller: the client certificate's subject under mutual
    # TLS, otherwise "anonymous".
    caller: str


_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "modelreg_request", default=None
)


def current() -> RequestContext | None:
    return _current.get()


def bind(ctx: RequestContext) -> contextvars.Token[RequestContext | None]:
    return _current.set(ctx)


def unbind(token: contextvars.Token[RequestContext | None]) -> None:
    _current.reset(token)


def current_actor() -> str:
    """The caller to record in the event log: "system" outside any RPC."""
    ctx = _current.get()
    return ctx.caller if ctx is not None else "system"
