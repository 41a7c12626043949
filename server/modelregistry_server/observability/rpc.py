"""The interceptor that counts every RPC: how many, how long, with which code.

It sits outside the request interceptor (first in the server's list), so it
sees the status that one chose for a domain error, and it also counts the
health and reflection RPCs that the request interceptor leaves alone.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import Counter, Gauge, Histogram

from ..api.handler_wrapping import WrappingInterceptor, rewrap
from . import metrics

Context = grpc.aio.ServicerContext[Any, Any]
# The data plane's streams, counted as transfers while they are open.
TRANSFER_METHODS = {
    "/modelregistry.v1.ArtifactService/Upload": "upload",
    "/modelregistry.v1.ArtifactService/Download": "download",
}


@functools.cache
def _in_flight(method: str, rpc_type: str) -> Gauge:
    return metrics.RPCS_IN_FLIGHT.labels(method, rpc_type)


@functools.cache
def _transfers(method: str) -> Gauge | None:
    direction = TRANSFER_METHODS.get(method)
    return metrics.TRANSFERS_IN_FLIGHT.labels(direction) if direction else None


@functools.cache
def _outcome(method: str, rpc_type: str, code: grpc.StatusCode) -> tuple[Counter, Histogram]:
    """The labelled children, looked up once per method and code: the
    lookup (a lock and a dict of label tuples) would otherwise cost more than
    recording does, on every RPC."""
    labels = (method, rpc_type, code.name)
    return metrics.RPCS_HANDLED.labels(*labels), metrics.RPC_DURATION.labels(*labels)


class _Timer:
    """One RPC's figures, recorded once when it ends however it ends."""

    def __init__(self, method: str, rpc_type: str) -> None:
        self.method, self.rpc_type = method, rpc_type
        self.start = time.perf_counter()
        self.in_flight = _in_flight(method, rpc_type)
        self.transfers = _transfers(method)
        self.in_flight.inc()
        if self.transfers is not None:
            self.transfers.inc()

    def done(self, code: grpc.StatusCode) -> None:
        handled, duration = _outcome(self.method, self.rpc_type, code)
        handled.inc()
        duration.observe(time.perf_counter() - self.start)
        self.in_flight.dec()
        if self.transfers is not None:
            self.transfers.dec()


def _failure_code(exc: BaseException, context: Context) -> grpc.StatusCode:
    if isinstance(exc, grpc.aio.AbortError):
        code = context.code()
        return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode.UNKNOWN


def _unary(
    method: str, rpc_type: str, behavior: Callable[[Any, Any], Any]
) -> Callable[[Any, Context], Awaitable[Any]]:
    async def wrapper(request: Any, context: Context) -> Any:
        timer = _Timer(method, rpc_type)
        try:
            response = await behavior(request, context)
        except BaseException as exc:
            timer.done(_failure_code(exc, context))
            raise
        timer.done(grpc.StatusCode.OK)
        return response

    return wrapper


def _stream(
    method: str, rpc_type: str, behavior: Callable[[Any, Any], Any]
) -> Callable[[Any, Context], Any]:
    if not inspect.isasyncgenfunction(behavior):
        # A handler that writes with `context.write` (health's Watch) and
        # returns nothing: time it like a unary one.
        return _unary(method, rpc_type, behavior)

    async def wrapper(request: Any, context: Context) -> AsyncIterator[Any]:
        timer = _Timer(method, rpc_type)
        try:
            async for response in behavior(request, context):
                yield response
        except BaseException as exc:
            timer.done(_failure_code(exc, context))
            raise
        timer.done(grpc.StatusCode.OK)

    return wrapper


class RpcMetricsInterceptor(WrappingInterceptor):
    def wrap(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        return rewrap(
            handler,
            lambda behavior, rpc_type: _unary(method, rpc_type, behavior),
            lambda behavior, rpc_type: _stream(method, rpc_type, behavior),
        )
