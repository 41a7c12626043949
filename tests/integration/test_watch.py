"""Watch and ListEvents over a real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator
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
from modelregistry_server.store.engine import make_engine
from modelregistry_server.store.event_log import SqlEventLog
from support.grpc_errors import error_info, expect_error
from support.in_process import start_server

if TYPE_CHECKING:
    from modelregistry.v1.event_service_pb2_grpc import EventServiceAsyncStub
    from modelregistry.v1.registry_service_pb2_grpc import RegistryServiceAsyncStub

PROGRESS_S = 0.3


@pytest.fixture
async def server(db_url: str, tmp_path: Path) -> AsyncIterator[Running]:
    """As the shared fixture, with frequent progress messages."""
    running = await start_server(
        ServerConfig(
            listen="127.0.0.1:0",
            data_dir=tmp_path / "data",
            database_url=db_url,
            watch_progress_interval=PROGRESS_S,
        )
    )
    try:
        yield running
    finally:
        await running.stop(grace=1)


@pytest.fixture
def events(channel: grpc.aio.Channel) -> EventServiceAsyncStub:
    return event_service_pb2_grpc.EventServiceStub(channel)


async def set_alias(registry: RegistryServiceAsyncStub, alias: str, version: int) -> pb.Alias:
    return await registry.SetAlias(
        rpc.SetAliasRequest(
            alias=pb.Alias(
                name=f"models/fraud/aliases/{alias}", version=f"models/fraud/versions/{version}"
            )
        )
    )


async def fraud_with_versions(registry: RegistryServiceAsyncStub, count: int) -> None:
    await registry.CreateModel(rpc.CreateModelRequest(model_id="fraud", model=pb.Model()))
    for _ in range(count):
        await registry.CreateModelVersion(
            rpc.CreateModelVersionRequest(
                parent="models/fraud", model_version=pb.ModelVersion(source_uri="s3://b/m")
            )
        )


async def collect(
    stream: AsyncIterable[ev.WatchResponse], count: int, within: float = 10
) -> list[pb.Event]:
    """The first `count` events of a stream (progress messages skipped)."""
    got: list[pb.Event] = []

    async def run() -> None:
        async for response in stream:
            got.extend(response.events)
            if len(got) >= count:
                return

    await asyncio.wait_for(run(), within)
    return got


async def test_replay_then_live_in_order(
    registry: RegistryServiceAsyncStub, events: EventServiceAsyncStub
) -> None:
    await fraud_with_versions(registry, 3)  # revisions 1..4
    for v in (1, 2, 3):
        await set_alias(registry, "production", v)  # 5..7
    call = events.Watch(ev.WatchRequest(start_revision=2))
    first = await collect(call, 6)
    assert [e.revision for e in first] == [2, 3, 4, 5, 6, 7]

    async def write_more() -> None:
        for v in (1, 2, 3, 1, 2):
            await set_alias(registry, "staging", v)

    writer = asyncio.create_task(write_more())
    live = await collect(call, 5)
    await writer
    call.cancel()
    assert [e.revision for e in live] == [8, 9, 10, 11, 12]
    assert all(e.type == "ALIAS_SET" for e in live)
    assert live[0].prev_hash == first[-1].hash

    listed = await events.ListEvents(ev.ListEventsRequest(start_revision=2, page_size=4))
    assert [e.revision for e in listed.events] == [2, 3, 4, 5]
    assert listed.revision == 12
    rest = await events.ListEvents(
        ev.ListEventsRequest(start_revision=2, page_size=4, page_token=listed.next_page_token)
    )
    assert [e.revision for e in rest.events] == [6, 7, 8, 9]
    assert list(rest.events) == first[4:] + live[:2]


async def test_filter_on_one_alias(
    registry: RegistryServiceAsyncStub, events: EventServiceAsyncStub
) -> None:
    await fraud_with_versions(registry, 2)
    await set_alias(registry, "production", 1)
    call = events.Watch(
        ev.WatchRequest(
            filter=ev.EventFilter(resource="models/fraud/aliases/production"), start_revision=1
        )
    )
    for v in (2, 1):
        await set_alias(registry, "staging", v)
        await set_alias(registry, "production", v)
    got = await collect(call, 3)
    call.cancel()
    assert {e.resource for e in got} == {"models/fraud/aliases/production"}
    assert [e.type for e in got] == ["ALIAS_SET"] * 3
    listed = await events.ListEvents(
        ev.ListEventsRequest(filter=ev.EventFilter(model="models/fraud", types=["ALIAS_SET"]))
    )
    assert len(listed.events) == 5


async def test_idle_stream_gets_progress(
    registry: RegistryServiceAsyncStub, events: EventServiceAsyncStub
) -> None:
    await fraud_with_versions(registry, 1)
    call = events.Watch(
        ev.WatchRequest(filter=ev.EventFilter(resource="models/fraud/aliases/production"))
    )
    stream = call.__aiter__()
    created = await asyncio.wait_for(stream.__anext__(), 5)
    # "Now" as far as the hub has read: at most the head.
    assert not created.events and created.revision <= 2
    await set_alias(registry, "staging", 1)  # not watched: only the revision moves
    start = time.monotonic()
    progress = await asyncio.wait_for(stream.__anext__(), 5)
    assert not progress.events and progress.revision == 3
    assert time.monotonic() - start < PROGRESS_S * 3
    call.cancel()


async def test_a_stream_the_caller_ends_leaves_the_hub(
    server: Running, events: EventServiceAsyncStub
) -> None:
    """The hub stops feeding a watcher the moment its caller goes, so a
    fleet that reconnects does not leave thousands of dead watchers behind."""
    assert server.hub is not None
    calls = [events.Watch(ev.WatchRequest()) for _ in range(3)]
    for call in calls:
        await asyncio.wait_for(call.read(), 5)
    assert server.hub.watcher_count == 3
    for call in calls:
        call.cancel()
    deadline = time.monotonic() + 5
    while server.hub.watcher_count:
        assert time.monotonic() < deadline, f"{server.hub.watcher_count} watchers left"
        await asyncio.sleep(0.01)


async def test_compacted_revision_is_out_of_range(
    server: Running,
    db_url: str,
    registry: RegistryServiceAsyncStub,
    events: EventServiceAsyncStub,
) -> None:
    await fraud_with_versions(registry, 2)
    engine = make_engine(db_url)
    try:
        compacted_to = await SqlEventLog(engine).compact(time.time_ns() // 1000 + 1)
    finally:
        await engine.dispose()
    assert compacted_to == 3
    await set_alias(registry, "production", 1)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        async for _ in events.Watch(ev.WatchRequest(start_revision=2)):
            pass
    assert exc.value.code() == grpc.StatusCode.OUT_OF_RANGE
    info = error_info(exc.value)
    assert info.reason == "REVISION_COMPACTED"
    assert info.metadata["oldest_revision"] == "4"
    await expect_error(
        events.ListEvents(ev.ListEventsRequest(start_revision=1)),
        grpc.StatusCode.OUT_OF_RANGE,
        "REVISION_COMPACTED",
    )
    listed = await events.ListEvents(ev.ListEventsRequest())
    assert [e.revision for e in listed.events] == [4]
    got = await collect(events.Watch(ev.WatchRequest(start_revision=4)), 1)
    assert got[0].revision == 4


async def test_bad_requests_are_invalid_argument(events: EventServiceAsyncStub) -> None:
    bad = grpc.StatusCode.INVALID_ARGUMENT
    await expect_error(
        events.ListEvents(ev.ListEventsRequest(filter=ev.EventFilter(model="fraud"))),
        bad,
        "INVALID_NAME",
    )
    await expect_error(
        events.ListEvents(ev.ListEventsRequest(filter=ev.EventFilter(types=["ALIAS_MOVED"]))),
        bad,
        "INVALID_FIELD",
    )
    await expect_error(
        events.ListEvents(ev.ListEventsRequest(page_size=-1)), bad, "INVALID_PAGE_SIZE"
    )
    await expect_error(
        events.ListEvents(ev.ListEventsRequest(page_token="forged.token")),
        bad,
        "INVALID_PAGE_TOKEN",
    )
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        async for _ in events.Watch(ev.WatchRequest(start_revision=-1)):
            pass
    assert exc.value.code() == bad
