"""An event stored before events were bounded, too large to send whole,
goes out without its snapshots and flagged: lists, streams and chain
verification keep working past it."""

from __future__ import annotations

import grpc
import pytest
from modelregistry.event_chain import verify_events
from modelregistry.v1 import event_service_pb2 as epb
from modelregistry.v1 import event_service_pb2_grpc, registry_service_pb2_grpc
from modelregistry.v1 import registry_service_pb2 as rpc
from modelregistry.v1 import resources_pb2 as pb
from modelregistry_server.api import event_servicer


async def test_oversized_event_is_sent_without_snapshots(
    channel: grpc.aio.Channel, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = registry_service_pb2_grpc.RegistryServiceStub(channel)
    events = event_service_pb2_grpc.EventServiceStub(channel)
    await registry.CreateModel(rpc.CreateModelRequest(model_id="small", model=pb.Model()))
    await registry.CreateModel(
        rpc.CreateModelRequest(model_id="big", model=pb.Model(description="x" * 2000))
    )
    # Stands in for the bound events were written under: "big" is now too large.
    monkeypatch.setattr(event_servicer, "SNAPSHOT_LIMIT_BYTES", 1000)
    event_servicer.event_to_pb.cache_clear()
    try:
        listed = (await events.ListEvents(epb.ListEventsRequest(page_size=100))).events
        by_resource = {e.resource: e for e in listed}
        big, small = by_resource["models/big"], by_resource["models/small"]
        assert big.snapshots_omitted and big.after_json == "" and big.hash
        assert not small.snapshots_omitted and small.after_json

        watch = events.Watch(epb.WatchRequest(start_revision=1))
        seen: list[pb.Event] = []
        async for response in watch:
            seen.extend(response.events)
            if any(e.resource == "models/big" for e in seen):
                break
        watch.cancel()
        assert [e.snapshots_omitted for e in seen if e.resource == "models/big"] == [True]

        async def stream() -> object:
            for e in listed:
                yield e

        report = await verify_events(stream())  # type: ignore[arg-type]
        assert not report.broken_at, report.reason
        assert report.unverified == [big.revision]
        assert report.checked == len(listed)
    finally:
        event_servicer.event_to_pb.cache_clear()
