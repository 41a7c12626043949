"""The server's interceptor: request id, caller identity and access, errors,
logs, telemetry.

Servicers raise domain errors; this is the only place that turns them (and
unexpected exceptions) into gRPC statuses. Unexpected exceptions are logged
with the request id and never shown to the caller.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from modelregistry.v1.error_reasons import ErrorReason
from opentelemetry import metrics, propagate, trace
from opentelemetry.context import Context

from ..config import MAX_MESSAGE_BYTES
from ..domain import request_context
from ..domain.errors import DomainError, ResourceExhausted, Unavailable
from ..domain.request_context import RequestContext
from . import error_map
from .access_rules import OPEN_PREFIXES
from .gate import AuthMode, Gate, certificate_subject, peek
from .handler_wrapping import WrappingInterceptor, rewrap
from .requests import parsed, parsed_stream, tolerant

log = logging.getLogger("modelreg.rpc")
# RPC types (see handler_wrapping.rewrap) whose requests arrive as a stream.
_STREAMING_REQUESTS = ("client_stream", "bidi_stream")
_tracer = trace.get_tracer("modelreg.server")
_meter = metrics.get_meter("modelreg.server")
_duration = _meter.create_histogram(
    "rpc.server.duration", unit="ms", description="Duration of each RPC, by method and code"
)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
REQUEST_ID_KEY = "x-request-id"


def _request_id(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_KEY and isinstance(value, str) and _REQUEST_ID.fullmatch(value):
            return value
    return uuid.uuid4().hex


def _trace_parent(context: grpc.aio.ServicerContext[Any, Any]) -> Context:
    """The caller's trace context (W3C `traceparent` metadata), if it sent one."""
    carrier = {
        key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)
    }
    return propagate.extract(carrier)


class _Call:
    """Bookkeeping for one RPC: binds the context, maps errors, logs the outcome."""

    def __init__(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self.context = context
        caller = certificate_subject(context.auth_context())
        self.ctx = RequestContext(_request_id(context), method, caller)
        self.start = time.perf_counter()
        self.code = grpc.StatusCode.OK
        self.reason = ""

    async def fail(self, exc: BaseException) -> None:
        rid = self.ctx.request_id
        if isinstance(exc, DomainError):
            code, message, trailers = error_map.from_domain(exc, rid)
            self.reason = exc.reason
        else:
            log.error(
                "unhandled error",
                exc_info=exc,
                extra={"request_id": rid, "method": self.ctx.method},
            )
            code, message, trailers = error_map.internal(rid)
            self.reason = ErrorReason.INTERNAL
        self.code = code
        await self.context.abort(code, message, (*trailers, (REQUEST_ID_KEY, rid)))

    async def admit(self, gate: Gate, request: Any) -> None:
        """Authenticate and authorize (see api.gate); bind who the caller is."""
        admitted = await gate.admit(
            self.ctx.method,
            request,
            tuple(self.context.invocation_metadata() or ()),
            self.context.auth_context(),
            self.ctx.request_id,
        )
        ctx = self.ctx
        self.ctx = RequestContext(
            ctx.request_id, ctx.method, admitted.caller, admitted.principal, admitted.visibility
        )
        request_context.bind(self.ctx)

    def aborted(self) -> None:
        """The servicer aborted by itself: record the code it chose."""
        code = self.context.code()
        self.code = code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN

    def cancelled(self) -> None:
        """The caller went away or its deadline passed."""
        self.code = grpc.StatusCode.CANCELLED

    def finish(self, span: trace.Span) -> None:
        elapsed_ms = (time.perf_counter() - self.start) * 1000
        attrs = {"rpc.method": self.ctx.method, "rpc.grpc.status_code": self.code.name}
        _duration.record(elapsed_ms, attrs)
        span.set_attribute("rpc.grpc.status_code", self.code.value[0])
        if self.reason:
            span.set_attribute("modelreg.reason", self.reason)
        log.info(
            "rpc",
            extra={
                "request_id": self.ctx.request_id,
                "method": self.ctx.method,
                "caller": self.ctx.caller,
                "code": self.code.name,
                "reason": self.reason,
                "duration_ms": round(elapsed_ms, 3),
            },
        )


Ready = Callable[[], bool]
# A response over the server's max_send_message_length would fail in the
# transport after the handler returned, logged as OK and without a reason;
# it is refused here instead, where the log and the caller see what happened.
MAX_RESPONSE_BYTES = MAX_MESSAGE_BYTES


def _sendable(response: Any) -> Any:
    if isinstance(response, bytes):  # serialized already (Watch)
        size = len(response)
    else:
        size = response.ByteSize() if hasattr(response, "ByteSize") else 0
    if size > MAX_RESPONSE_BYTES:
        raise ResourceExhausted(
            ErrorReason.RESPONSE_TOO_LARGE,
            f"the response would be {size} bytes, over the {MAX_RESPONSE_BYTES}-byte limit",
        )
    return response


def _check_ready(ready: Ready) -> None:
    if not ready():
        raise Unavailable(
            ErrorReason.NOT_READY,
            "the server is starting (waiting for its database); retry shortly",
        )


@dataclass(frozen=True)
class _Entry:
    """What every wrapped RPC needs: readiness, the gate, and how to make an
    empty request (to authorize a client stream that sends nothing)."""

    ready: Ready
    gate: Gate
    empty: Callable[[bytes], Any] | None


async def _admitted(entry: _Entry, call: _Call, request: Any, streaming: bool) -> Any:
    """Check readiness and access; returns the request as the servicer must
    see it (a client stream whose first message was read to authorize it)."""
    _check_ready(entry.ready)
    if entry.gate.mode == AuthMode.OFF:
        return request  # the caller is already recorded; nothing to enforce
    if not streaming:
        await call.admit(entry.gate, request)
        return request
    first, replay = await peek(request)
    if first is None and entry.empty is not None:
        first = entry.empty(b"")
    await call.admit(entry.gate, first)
    return replay


def _wrap_unary(
    entry: _Entry, method: str, behavior: Callable[[Any, Any], Awaitable[Any]], streaming: bool
) -> Callable[[Any, Any], Awaitable[Any]]:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        call = _Call(method, context)
        token = request_context.bind(call.ctx)
        with _tracer.start_as_current_span(
            method, context=_trace_parent(context), kind=trace.SpanKind.SERVER
        ) as span:
            try:
                context.set_trailing_metadata(((REQUEST_ID_KEY, call.ctx.request_id),))
                request = parsed_stream(request) if streaming else parsed(request)
                request = await _admitted(entry, call, request, streaming)
                return _sendable(await behavior(request, context))
            except grpc.aio.AbortError:
                call.aborted()
                raise
            except asyncio.CancelledError:
                call.cancelled()
                raise
            except Exception as exc:
                await call.fail(exc)
            finally:
                call.finish(span)
                request_context.unbind(token)

    return wrapper


def _wrap_stream(
    entry: _Entry, method: str, behavior: Callable[[Any, Any], Any], streaming: bool
) -> Callable[[Any, Any], Any]:
    """Like the unary wrapper, but nothing is attached to the context across a
    `yield`: a stream may be finalized (client gone) in another context, where
    resetting a context variable would fail. Each RPC runs in a task of its
    own, so the request context set here cannot leak into another RPC."""

    async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        call = _Call(method, context)
        request_context.bind(call.ctx)
        span = _tracer.start_span(
            method, context=_trace_parent(context), kind=trace.SpanKind.SERVER
        )
        try:
            context.set_trailing_metadata(((REQUEST_ID_KEY, call.ctx.request_id),))
            request = parsed_stream(request) if streaming else parsed(request)
            request = await _admitted(entry, call, request, streaming)
            async for response in behavior(request, context):
                yield _sendable(response)
        except grpc.aio.AbortError:
            call.aborted()
            raise
        except (asyncio.CancelledError, GeneratorExit):
            call.cancelled()
            raise
        except Exception as exc:
            await call.fail(exc)
        finally:
            call.finish(span)
            span.end()

    return wrapper


class RequestInterceptor(WrappingInterceptor):
    """`ready` says whether storage is prepared; until then RPCs get UNAVAILABLE.
    `gate` authenticates and authorizes every RPC but health and reflection
    (default: authentication off, nothing enforced)."""

    def __init__(self, ready: Callable[[], bool], gate: Gate | None = None) -> None:
        super().__init__()
        self._ready = ready
        self._gate = gate or Gate(AuthMode.OFF)

    def wrap(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        if method.startswith(OPEN_PREFIXES):
            return handler
        entry = _Entry(self._ready, self._gate, handler.request_deserializer)
        return rewrap(
            handler,
            lambda behavior, rpc_type: _wrap_unary(
                entry, method, behavior, rpc_type in _STREAMING_REQUESTS
            ),
            lambda behavior, rpc_type: _wrap_stream(
                entry, method, behavior, rpc_type in _STREAMING_REQUESTS
            ),
            request_deserializer=tolerant(handler.request_deserializer),
        )
