"""Two `modelreg serve` replicas on one PostgreSQL database: a change
committed through one reaches watchers of the other at once (LISTEN/NOTIFY,
not the poll), and `modelreg events` reads and follows the log."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from modelregistry import RegistryClient
from modelregistry.v1 import event_service_pb2 as ev
from modelregistry.v1 import event_service_pb2_grpc
from support.processes import CLI, ServeProcess

# Far longer than any latency the test accepts: only NOTIFY can explain a prompt event.
POLL_S = 30.0


@pytest.fixture
def started(pg_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Replicas a and b, both SERVING (started together, waited for in turn)."""
    flags = ("--database-url", pg_url, "--watch-poll-interval", str(POLL_S))
    a, b = (ServeProcess(tmp_path / name, *flags, "--shutdown-grace", "1") for name in "ab")
    try:
        for server in (a, b):
            server.launch()
        for server in (a, b):
            server.wait_serving()
        yield a.address, b.address
    finally:
        for server in (a, b):
            server.stop()


async def test_commit_on_a_reaches_watcher_on_b_promptly(started: tuple[str, str]) -> None:
    a, b = started
    async with (
        RegistryClient(a) as writer,
        grpc.aio.insecure_channel(b) as channel,
    ):
        await writer.create_model("fraud")
        for _ in range(2):
            await writer.create_model_version("models/fraud", source_uri="s3://b/m")
        stub = event_service_pb2_grpc.EventServiceStub(channel)
        call = stub.Watch(
            ev.WatchRequest(filter=ev.EventFilter(resource="models/fraud/aliases/production"))
        )
        stream = call.__aiter__()
        created = await asyncio.wait_for(stream.__anext__(), 10)
        assert not created.events and created.revision <= 3
        latencies: list[float] = []
        revisions: list[int] = []
        for i in range(10):
            await writer.set_alias("models/fraud/aliases/production", 1 + i % 2)
            committed = time.monotonic()
            while True:
                response = await asyncio.wait_for(stream.__anext__(), 5)
                if response.events:
                    break
            latencies.append(time.monotonic() - committed)
            revisions.extend(e.revision for e in response.events)
        call.cancel()
    assert revisions == list(range(4, 14))
    assert max(latencies) < 1.0, latencies
    assert sorted(latencies)[len(latencies) // 2] < 0.25, latencies


async def test_cli_lists_and_follows_events(started: tuple[str, str]) -> None:
    a, b = started
    async with RegistryClient(a) as writer:
        await writer.create_model("fraud")
        await writer.create_model_version("models/fraud", source_uri="s3://b/m")
        watcher = await asyncio.create_subprocess_exec(
            *CLI,
            "events",
            "watch",
            "--server",
            b,
            "--resource",
            "fraud/aliases/production",
            "--since-revision",
            "1",
            "--count",
            "2",
            "-o",
            "json",
            stdout=asyncio.subprocess.PIPE,
        )
        await writer.set_alias("models/fraud/aliases/staging", 1)
        await writer.set_alias("models/fraud/aliases/production", 1)
        await writer.set_alias("models/fraud/aliases/production", 1)
        out, _ = await asyncio.wait_for(watcher.communicate(), 20)
    assert watcher.returncode == 0
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert [e["revision"] for e in lines] == [4, 5]
    assert {e["resource"] for e in lines} == {"models/fraud/aliases/production"}

    lister = await asyncio.create_subprocess_exec(
        *[*CLI, "events", "list", "--server", a, "--model", "fraud", "--type", "ALIAS_SET"],
        stdout=asyncio.subprocess.PIPE,
    )
    listed, _ = await asyncio.wait_for(lister.communicate(), 30)
    assert lister.returncode == 0
    rows = listed.decode().splitlines()
    assert rows[0].split() == ["REVISION", "TIME", "TYPE", "RESOURCE", "CHANGE", "ACTOR"]
    assert [r.split()[0] for r in rows[1:]] == ["3", "4", "5"]
