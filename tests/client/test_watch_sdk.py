"""The SDK's watch and event listing against real servers: resuming across a
restart, typed errors, pages."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from modelregistry import RegistryClient, RetryPolicy, RevisionCompactedError
from modelregistry.v1 import resources_pb2 as pb
from modelregistry_server.config import ServerConfig
from modelregistry_server.server import Running
from modelregistry_server.store.engine import make_engine
from modelregistry_server.store.event_log import SqlEventLog
from support.in_process import start_server

FAST_RETRY = RetryPolicy(initial_backoff=0.05, max_backoff=0.3)


def config(db_url: str, tmp_path: Path, listen: str = "127.0.0.1:0") -> ServerConfig:
    return ServerConfig(
        listen=listen,
        data_dir=tmp_path / "data",
        database_url=db_url,
        watch_progress_interval=0.3,
    )


@pytest.fixture
async def server(db_url: str, tmp_path: Path) -> AsyncIterator[Running]:
    running = await start_server(config(db_url, tmp_path))
    try:
        yield running
    finally:
        await running.stop(grace=1)


async def promote(client: RegistryClient, versions: list[int]) -> None:
    for v in versions:
        await client.set_alias("models/fraud/aliases/production", v)


async def test_watch_resumes_across_restart(db_url: str, tmp_path: Path) -> None:
    first = await start_server(config(db_url, tmp_path))
    address = f"127.0.0.1:{first.port}"
    received: list[pb.Event] = []
    async with RegistryClient(address, retry=FAST_RETRY) as client:
        await client.create_model("fraud")
        for _ in range(2):
            await client.create_model_version("models/fraud", source_uri="s3://b/m")

        async def follow() -> None:
            async for event in client.watch(start_revision=1):
                received.append(event)

        follower = asyncio.create_task(follow())
        await promote(client, [1, 2])  # revisions 4, 5
        await wait_for_count(received, 5)
        await first.stop(grace=1)
        second = await start_server(config(db_url, tmp_path, listen=address))
        try:
            await promote(client, [1, 2, 1])  # 6, 7, 8
            await wait_for_count(received, 8)
        finally:
            follower.cancel()
            await second.stop(grace=1)
    assert [e.revision for e in received] == list(range(1, 9))
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(received))


async def wait_for_count(received: list[pb.Event], count: int, within: float = 15) -> None:
    deadline = time.monotonic() + within
    while len(received) < count:
        assert time.monotonic() < deadline, f"got {len(received)} of {count} events"
        await asyncio.sleep(0.02)


async def test_compacted_revision_is_a_typed_error(server: Running, db_url: str) -> None:
    async with RegistryClient(f"127.0.0.1:{server.port}", retry=FAST_RETRY) as client:
        await client.create_model("fraud")
        await client.create_model_version("models/fraud", source_uri="s3://b/m")
        engine = make_engine(db_url)
        try:
            await SqlEventLog(engine).compact(time.time_ns() // 1000 + 1)
        finally:
            await engine.dispose()
        with pytest.raises(RevisionCompactedError) as exc:
            async for _ in client.watch(start_revision=1):
                pass
        assert exc.value.oldest_revision == 3
        with pytest.raises(RevisionCompactedError):
            [e async for e in client.list_events(start_revision=2)]


async def test_list_events_pages_and_filters(server: Running) -> None:
    async with RegistryClient(f"127.0.0.1:{server.port}") as client:
        await client.create_model("fraud")
        await client.create_model("churn")
        for _ in range(3):
            await client.create_model_version("models/fraud", source_uri="s3://b/m")
        await promote(client, [1, 2, 3])
        everything = [e async for e in client.list_events(page_size=2)]
        assert [e.revision for e in everything] == list(range(1, 9))
        fraud = [e async for e in client.list_events(model="models/fraud", page_size=2)]
        assert len(fraud) == 7
        aliases = [e async for e in client.list_events(types=["ALIAS_SET"], start_revision=7)]
        assert [e.revision for e in aliases] == [7, 8]
        page = await client.list_events_page(resource="models/fraud/aliases/production")
        assert page.revision == 8 and len(page.events) == 3 and not page.next_page_token


async def test_watch_stream_reports_progress(server: Running) -> None:
    async with RegistryClient(f"127.0.0.1:{server.port}") as client:
        await client.create_model("fraud")
        stream = client.watch_stream(model="models/churn")
        seen = []
        async for response in stream.responses():
            seen.append(response)
            if len(seen) == 2:
                break
        assert all(not r.events for r in seen)
        assert stream.revision == 1
