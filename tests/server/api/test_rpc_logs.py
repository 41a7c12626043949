"""One structured log line per RPC; internal errors are logged in full and
reach the caller only as a generic message with the request id."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any, NoReturn

import grpc
import pytest
from modelregistry.v1 import registry_service_pb2 as rpc
from modelregistry_server.logging_setup import JsonFormatter, TextFormatter
from modelregistry_server.server import Running
from support.grpc_errors import error_info

if TYPE_CHECKING:
    from modelregistry.v1.registry_service_pb2_grpc import RegistryServiceAsyncStub

FIELDS = ("request_id", "method", "caller", "code", "reason", "duration_ms")


async def logged_rpc_lines(
    caplog: pytest.LogCaptureFixture, count: int = 1
) -> list[dict[str, Any]]:
    """The `rpc` lines once there are `count`: the server writes each after
    the status went out, so the client may see the status first."""
    for _ in range(100):
        if len(rpc_lines(caplog)) >= count:
            break
        await asyncio.sleep(0.02)
    return rpc_lines(caplog)


def rpc_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The `rpc` records as the JSON lines the server would write."""
    formatter = JsonFormatter()
    return [
        json.loads(formatter.format(r))
        for r in caplog.records
        if r.name == "modelreg.rpc" and r.msg == "rpc"
    ]


async def test_each_rpc_logs_one_json_line(
    registry: RegistryServiceAsyncStub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="modelreg.rpc")
    call = registry.CreateModel(
        rpc.CreateModelRequest(model_id="fraud"), metadata=(("x-request-id", "req-42"),)
    )
    await call
    assert ("x-request-id", "req-42") in tuple(await call.trailing_metadata() or ())
    with pytest.raises(grpc.aio.AioRpcError):
        await registry.GetModel(rpc.GetModelRequest(name="models/absent"))

    created, missing = await logged_rpc_lines(caplog, count=2)
    for line in (created, missing):
        assert set(FIELDS) <= line.keys()
        assert line["caller"] == "anonymous"
        assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert created["request_id"] == "req-42"
    assert created["method"] == "/modelregistry.v1.RegistryService/CreateModel"
    assert (created["code"], created["reason"]) == ("OK", "")
    assert missing["method"] == "/modelregistry.v1.RegistryService/GetModel"
    assert (missing["code"], missing["reason"]) == ("NOT_FOUND", "MODEL_NOT_FOUND")
    assert len(missing["request_id"]) == 32  # generated when the caller sent none


async def test_text_logs_keep_the_rpc_fields(
    registry: RegistryServiceAsyncStub, caplog: pytest.LogCaptureFixture
) -> None:
    """`--log-format text` shows the same fields as key=value, not just `rpc`."""
    caplog.set_level(logging.INFO, logger="modelreg.rpc")
    with pytest.raises(grpc.aio.AioRpcError):
        await registry.GetModel(
            rpc.GetModelRequest(name="models/absent"), metadata=(("x-request-id", "req-7"),)
        )
    await logged_rpc_lines(caplog)
    (record,) = [r for r in caplog.records if r.name == "modelreg.rpc" and r.msg == "rpc"]
    line = TextFormatter().format(record)
    assert " INFO modelreg.rpc rpc " in line
    for expected in (
        "request_id=req-7",
        "method=/modelregistry.v1.RegistryService/GetModel",
        "code=NOT_FOUND",
        "reason=MODEL_NOT_FOUND",
        "caller=anonymous",
        "duration_ms=",
    ):
        assert expected in line, line


async def test_internal_error_is_logged_but_not_shown(
    server: Running,
    registry: RegistryServiceAsyncStub,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO, logger="modelreg.rpc")

    async def broken(*_args: object) -> NoReturn:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(server.store, "get_model", broken)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await registry.GetModel(
            rpc.GetModelRequest(name="models/fraud"), metadata=(("x-request-id", "req-500"),)
        )

    err = exc.value
    assert err.code() == grpc.StatusCode.INTERNAL
    assert "secret detail" not in (err.details() or "")
    assert "RuntimeError" not in (err.details() or "")
    assert "req-500" in (err.details() or "")
    info = error_info(err)
    assert info.reason == "INTERNAL"
    assert dict(info.metadata) == {"request_id": "req-500"}

    (failure,) = [r for r in caplog.records if r.msg == "unhandled error"]
    line = json.loads(JsonFormatter().format(failure))
    assert line["level"] == "ERROR"
    assert line["request_id"] == "req-500"
    assert "RuntimeError: secret detail" in line["exception"]
    (summary,) = await logged_rpc_lines(caplog)
    assert (summary["code"], summary["reason"]) == ("INTERNAL", "INTERNAL")
    assert summary["request_id"] == "req-500"


async def test_cancelled_call_is_logged_as_cancelled(
    server: Running,
    registry: RegistryServiceAsyncStub,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A caller that gives up is not logged as a success."""
    caplog.set_level(logging.INFO, logger="modelreg.rpc")
    entered = asyncio.Event()

    async def slow(*_args: object) -> NoReturn:
        entered.set()
        await asyncio.sleep(30)
        raise AssertionError("not reached")

    monkeypatch.setattr(server.store, "get_model", slow)
    call = registry.GetModel(rpc.GetModelRequest(name="models/fraud"))
    await asyncio.wait_for(entered.wait(), timeout=5)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    (summary,) = await logged_rpc_lines(caplog)
    assert summary["code"] == "CANCELLED"


async def test_a_response_too_large_to_send_is_logged_as_what_the_caller_got(
    registry: RegistryServiceAsyncStub,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from modelregistry.v1 import resources_pb2 as pb
    from modelregistry_server.api import interceptors

    caplog.set_level(logging.INFO, logger="modelreg.rpc")
    await registry.CreateModel(
        rpc.CreateModelRequest(model_id="fraud", model=pb.Model(description="x" * 2000))
    )
    monkeypatch.setattr(interceptors, "MAX_RESPONSE_BYTES", 1000)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await registry.GetModel(rpc.GetModelRequest(name="models/fraud"))
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error_info(exc.value).reason == "RESPONSE_TOO_LARGE"
    line = rpc_lines(caplog)[-1]
    assert (line["code"], line["reason"]) == ("RESOURCE_EXHAUSTED", "RESPONSE_TOO_LARGE")
