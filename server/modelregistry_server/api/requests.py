"""Request bytes that do not parse are the caller's error, answered as one.

grpc turns an exception in a request deserializer into UNKNOWN and logs a
traceback per request, which a garbage-sending client could use to flood
the log. So requests are parsed here instead: bytes that do not parse
(corrupt wire format, invalid UTF-8 in a string, nesting past protobuf's
limit) become a `Malformed` value, and the interceptor answers it with
INVALID_ARGUMENT (INVALID_REQUEST) like any other bad input.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from modelregistry.v1.error_reasons import ErrorReason

from ..domain.errors import InvalidArgument


class Malformed:
    """Stands in for a request message whose bytes did not parse."""

    __slots__ = ("problem",)

    def __init__(self, problem: str) -> None:
        self.problem = problem


def tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """`deserializer`, returning `Malformed` where it would raise."""
    if deserializer is None:
        return None
    parse = deserializer

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except RecursionError:
            return Malformed("nested too deeply")
        except Exception:  # DecodeError, or whatever else a parser raises on bad bytes
            return Malformed("not a valid protobuf message of the method's request type")

    return deserialize


def parsed(request: Any) -> Any:
    """`request`, or INVALID_ARGUMENT if its bytes did not parse."""
    if isinstance(request, Malformed):
        raise InvalidArgument(ErrorReason.INVALID_REQUEST, f"the request is {request.problem}")
    return request


async def parsed_stream(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """Each request checked. The frame keeps no request while it waits for
    the next one: an upload chunk can be 4 MiB and its sender may go quiet."""
    iterator = aiter(requests)
    box: list[Any] = []
    while True:
        try:
            box.append(await anext(iterator))
        except StopAsyncIteration:
            return
        yield parsed(box.pop())
