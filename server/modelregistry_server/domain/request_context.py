"""Who is calling and which request this is: for logs, traces, the audit
trail in the event log and access control. Set by the API layer."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Protocol

from .principals import Principal

ANONYMOUS = "anonymous"


class Visible(Protocol):
    """What a list or stream may show this caller."""

    async def models(self) -> frozenset[str] | None:
        """None: every model; else only these."""


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    method: str
    # The caller as recorded in events and logs: the authenticated
    # principal; without authentication, the client certificate's subject
    # under mutual TLS, otherwise "anonymous".
    caller: str
    # The authenticated principal; None when authentication is off.
    principal: Principal | None = None
    # Set for lists and streams that must be filtered by permission.
    visibility: Visible | None = None


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


def current_principal() -> Principal | None:
    ctx = _current.get()
    return ctx.principal if ctx is not None else None


async def visible_models() -> frozenset[str] | None:
    """The models the current caller may see in a list (None: all of them)."""
    ctx = _current.get()
    if ctx is None or ctx.visibility is None:
        return None
    return await ctx.visibility.models()
