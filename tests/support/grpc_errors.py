"""The error details a failed RPC carries: one `google.rpc.ErrorInfo` in the
`grpc-status-details-bin` trailer, whose `reason` callers branch on."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2


def error_info(err: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    """The ErrorInfo of a failed call (AssertionError unless there is exactly one)."""
    trailers: Any = err.trailing_metadata() or ()
    raw = next(v for k, v in trailers if k == "grpc-status-details-bin")
    assert isinstance(raw, bytes)
    status = status_pb2.Status.FromString(raw)
    assert len(status.details) == 1
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    return info


def reason(err: grpc.aio.AioRpcError) -> str:
    return str(error_info(err).reason)


async def expect_error(call: Any, code: grpc.StatusCode, why: str) -> None:
    """Await `call`; it must fail with this status code and reason."""
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await call
    assert (exc.value.code(), reason(exc.value)) == (code, why), exc.value.details()
