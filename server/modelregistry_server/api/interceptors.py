"""The server's interceptor: request id, caller identity, errors, logs, telemetry.

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
from typing import Any

import grpc
from modelregistry.v1.error_reasons import ErrorReason
from opentelemetry import metrics, propagate, trace
from opentelemetry.context import Context

from ..config import MAX_MESSAGE_BYTES
from ..domain import request_context
from ..domain.errors import DomainError, ResourceExhausted, Unavailable
from ..domain.request_context import ANONYMOUS, RequestContext
from . import error_map
from .requests import parsed, parsed_stream, tolerant

log = logging.getLogger("modelreg.rpc")
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


def _caller(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    auth = context.auth_context()
    for key in ("x509_subject", "x509_common_name"):
        values = list(auth.get(key) or ())
        if values:
            return bytes(values[0]).decode(errors="replace")
    return ANONYMOUS


class _Call:
    """Bookkeeping for one RPC: binds the context, maps errors, logs the outcome."""

    def __init__(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self.context = context
        self.ctx = RequestContext(_request_id(context), method, _caller(context))
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


def _wrap_unary(
    ready: Ready,
    method: str,
    behavior: Callable[[Any, Any], Awaitable[Any]],
    streaming_request: bool = False,
) -> Callable[[Any, Any], Awaitable[Any]]:
    async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        call = _Call(method, context)
        token = request_context.bind(call.ctx)
        with _tracer.start_as_current_span(
            method, context=_trace_parent(context), kind=trace.SpanKind.SERVER
        ) as span:
            try:
                context.set_trailing_metadata(((REQUEST_ID_KEY, call.ctx.request_id),))
                _check_ready(ready)
                request = parsed_stream(request) if streaming_request else parsed(request)
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
    ready: Ready,
    method: str,
    behavior: Callable[[Any, Any], Any],
    streaming_request: bool = False,
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
            _check_ready(ready)
            request = parsed_stream(request) if streaming_request else parsed(request)
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


class RequestInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """`ready` says whether storage is prepared; until then RPCs get UNAVAILABLE."""

    def __init__(self, ready: Callable[[], bool]) -> None:
        self._ready = ready

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        if method.startswith(("/grpc.health.", "/grpc.reflection.")):
            return handler
        kwargs = {
            "request_deserializer": tolerant(handler.request_deserializer),
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(self._ready, method, handler.unary_unary), **kwargs
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary(self._ready, method, handler.stream_unary, True), **kwargs
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(self._ready, method, handler.unary_stream), **kwargs
            )
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(
                _wrap_stream(self._ready, method, handler.stream_stream, True), **kwargs
            )
        return handler
