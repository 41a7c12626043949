"""Every RPC is a server span; every database transaction inside it a child span."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import grpc
import pytest
from modelregistry.v1 import registry_service_pb2 as rpc
from modelregistry_server.server import Running
from opentelemetry import context, trace
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

if TYPE_CHECKING:
    from modelregistry.v1.registry_service_pb2_grpc import RegistryServiceAsyncStub


class Capture(SpanProcessor):
    """Keeps finished spans only while a test listens: the tracer provider is
    process-wide and cannot be uninstalled."""

    def __init__(self) -> None:
        self.exporter: InMemorySpanExporter | None = None

    def on_start(self, span: Span, parent_context: context.Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if self.exporter is not None:
            self.exporter.export([span])


_capture = Capture()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
        provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider), "another tracer provider is installed"
    if not getattr(provider, "_modelreg_capture", False):
        provider.add_span_processor(_capture)
        provider._modelreg_capture = True  # type: ignore[attr-defined]
    exporter = InMemorySpanExporter()
    _capture.exporter = exporter
    try:
        yield exporter
    finally:
        _capture.exporter = None


def _named(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    (span,) = [s for s in exporter.get_finished_spans() if s.name == name]
    return span


async def test_rpc_span_has_a_database_child(
    server: Running, registry: RegistryServiceAsyncStub, spans: InMemorySpanExporter
) -> None:
    await registry.CreateModel(rpc.CreateModelRequest(model_id="fraud"))

    parent = _named(spans, "/modelregistry.v1.RegistryService/CreateModel")
    child = _named(spans, "store.create_model")
    assert parent.kind == trace.SpanKind.SERVER
    assert child.kind == trace.SpanKind.CLIENT
    assert parent.context is not None and child.context is not None
    assert child.parent is not None
    assert child.parent.span_id == parent.context.span_id
    assert child.context.trace_id == parent.context.trace_id
    assert child.attributes is not None
    assert child.attributes["db.system"] == server.store.engine.dialect.name
    assert parent.attributes is not None
    assert parent.attributes["rpc.grpc.status_code"] == 0


async def test_domain_error_is_not_a_failed_database_span(
    registry: RegistryServiceAsyncStub, spans: InMemorySpanExporter
) -> None:
    with pytest.raises(grpc.aio.AioRpcError):
        await registry.GetModel(rpc.GetModelRequest(name="models/absent"))
    parent = _named(spans, "/modelregistry.v1.RegistryService/GetModel")
    assert parent.attributes is not None
    assert parent.attributes["modelreg.reason"] == "MODEL_NOT_FOUND"
    child = _named(spans, "store.get_model")
    assert child.status.status_code != trace.StatusCode.ERROR


async def test_server_span_joins_the_callers_trace(
    registry: RegistryServiceAsyncStub, spans: InMemorySpanExporter
) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    traceparent = f"00-{trace_id}-00f067aa0ba902b7-01"
    await registry.CreateModel(
        rpc.CreateModelRequest(model_id="fraud"), metadata=(("traceparent", traceparent),)
    )
    parent = _named(spans, "/modelregistry.v1.RegistryService/CreateModel")
    assert parent.context is not None
    assert f"{parent.context.trace_id:032x}" == trace_id
    assert parent.parent is not None and f"{parent.parent.span_id:016x}" == "00f067aa0ba902b7"
