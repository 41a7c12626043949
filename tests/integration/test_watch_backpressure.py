"""Slow watchers: they never hold back others, catch up from the table, or
are told to resume when too far behind. Real server, real flow control."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from modelregistry.v1 import event_service_pb2 as ev
from modelregistry.v1 import event_service_pb2_grpc
from modelregistry.v1 import registry_service_pb2 as rpc
from modelregistry.v1 import resources_pb2 as pb
from modelregistry_server.config import ServerConfig
from modelregistry_server.server import Running
from support.in_process import start_server

if TYPE_CHECKING:
    from modelregistry.v1.registry_service_pb2_grpc import RegistryServiceAsyncStub

# Big events fill a stalled stream's flow-control window after a few dozen.
DESCRIPTION = "x" * 8000
EVENTS = 150
# A stalled client: no window growth, so the server's writes block soon.
SLOW_OPTIONS = [("grpc.http2.bdp_probe", 0)]


@pytest.fixture
async def server(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Running]:
    running = await start_server(
        ServerConfig(listen="127.0.0.1:0", data_dir=tmp_path / "data", database_url=sqlite_url)
    )
    assert running.hub is not None
    running.hub.settings = replace(running.hub.settings, buffer_events=10, max_lag=100_000)
    try:
        yield running
    finally:
        await running.stop(grace=1)


async def write_events(registry: RegistryServiceAsyncStub, count: int) -> list[float]:
    """Model updates with large descriptions; the time each one committed."""
    await registry.CreateModel(rpc.CreateModelRequest(model_id="fraud", model=pb.Model()))
    times = []
    for i in range(count):
        await registry.UpdateModel(
            rpc.UpdateModelRequest(
                model=pb.Model(name="models/fraud", description=f"{i} {DESCRIPTION}"),
            )
        )
        times.append(time.monotonic())
    return times


async def test_slow_watcher_does_not_delay_a_fast_one(
    server: Running, registry: RegistryServiceAsyncStub
) -> None:
    address = f"127.0.0.1:{server.port}"
    async with (
        grpc.aio.insecure_channel(address, options=SLOW_OPTIONS) as slow_channel,
        grpc.aio.insecure_channel(address) as fast_channel,
    ):
        slow = event_service_pb2_grpc.EventServiceStub(slow_channel).Watch(ev.WatchRequest())
        fast = event_service_pb2_grpc.EventServiceStub(fast_channel).Watch(ev.WatchRequest())
        slow_stream, fast_stream = slow.__aiter__(), fast.__aiter__()
        await slow_stream.__anext__()  # the stream is open; now it stops reading
        await fast_stream.__anext__()
        received: dict[int, float] = {}

        async def read_fast() -> None:
            async for response in fast_stream:
                for event in response.events:
                    received[event.revision] = time.monotonic()
                if len(received) >= EVENTS + 1:
                    return

        reader = asyncio.create_task(read_fast())
        committed = await write_events(registry, EVENTS)
        await asyncio.wait_for(reader, 30)
        lags = [received[i + 2] - t for i, t in enumerate(committed)]
        assert max(lags) < 1.0, max(lags)

        # The slow one now reads: everything, in order, from the table.
        revisions: list[int] = []
        while len(revisions) < EVENTS + 1:
            response = await asyncio.wait_for(slow_stream.__anext__(), 10)
            revisions.extend(e.revision for e in response.events)
        assert revisions == list(range(1, EVENTS + 2))
        slow.cancel()
        fast.cancel()


async def test_too_far_behind_is_told_to_resume(
    server: Running, registry: RegistryServiceAsyncStub
) -> None:
    assert server.hub is not None
    server.hub.settings = replace(server.hub.settings, max_lag=20)
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{server.port}", options=SLOW_OPTIONS
    ) as channel:
        slow = event_service_pb2_grpc.EventServiceStub(channel).Watch(ev.WatchRequest())
        stream = slow.__aiter__()
        await stream.__anext__()
        await write_events(registry, EVENTS)
        last = 0
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            while True:
                response = await asyncio.wait_for(stream.__anext__(), 10)
                revisions = [e.revision for e in response.events]
                assert revisions == list(range(last + 1, last + 1 + len(revisions))) or not last
                last = max([last, *revisions])
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "resume from revision" in (exc.value.details() or "")
