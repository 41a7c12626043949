"""Wrapping a gRPC method handler's behaviour, whatever its streaming shape.

A grpc.aio interceptor cannot wrap a call; it can only hand back a new
method handler of the same kind around the old behaviour. Both of the
server's interceptors (requests and metrics) need that, so it lives here once.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

Behavior = Callable[[Any, Any], Any]
# (behaviour, RPC type) -> the behaviour to run instead.
Wrap = Callable[[Behavior, str], Behavior]


def rewrap(
    handler: grpc.RpcMethodHandler[Any, Any],
    unary_response: Wrap,
    stream_response: Wrap,
    request_deserializer: Callable[[bytes], Any] | None = None,
    writer_response: Wrap | None = None,
) -> grpc.RpcMethodHandler[Any, Any]:
    """`handler` with its behaviour wrapped: by `unary_response` when the RPC
    answers once, by `stream_response` when it streams its answer from an
    async generator. A streaming behaviour that writes its answer with
    `context.write` is awaited once, like a unary one: `writer_response`
    wraps it if given, else `unary_response`, so that a message it writes
    passes through no layer of the wrapping. The RPC type passed along is
    unary, client_stream, server_stream or bidi_stream.
    `request_deserializer` replaces the handler's own, if given."""
    shapes: tuple[tuple[str, Callable[..., grpc.RpcMethodHandler[Any, Any]], Wrap, str], ...] = (
        ("unary_unary", grpc.unary_unary_rpc_method_handler, unary_response, "unary"),
        ("stream_unary", grpc.stream_unary_rpc_method_handler, unary_response, "client_stream"),
        ("unary_stream", grpc.unary_stream_rpc_method_handler, stream_response, "server_stream"),
        ("stream_stream", grpc.stream_stream_rpc_method_handler, stream_response, "bidi_stream"),
    )
    for attribute, make, wrap, rpc_type in shapes:
        behavior = getattr(handler, attribute)
        if behavior:
            if wrap is stream_response and not inspect.isasyncgenfunction(behavior):
                wrap = writer_response or unary_response
            return make(
                wrap(behavior, rpc_type),
                request_deserializer=request_deserializer or handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    return handler


class WrappingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """An interceptor that wraps the behaviour of each method it is asked about.

    `wrap` depends on the method and the handler only, never on the call, so
    a method's wrapped handler is made once and reused for as long as the
    handler it wraps stays the same: gRPC asks the interceptors on every
    call, and making a handler and its closures each time cost a cached
    read a few percent of its server time per interceptor."""

    def __init__(self) -> None:
        # method -> (the handler wrapped, its wrapping)
        self._wrapped: dict[
            str, tuple[grpc.RpcMethodHandler[Any, Any], grpc.RpcMethodHandler[Any, Any]]
        ] = {}

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
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        made = self.wrap(handler, method)
        # Only registered methods get here (an unknown one has no handler),
        # so this holds one entry per method the server serves.
        self._wrapped[method] = (handler, made)
        return made

    def wrap(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        raise NotImplementedError
