"""Two `modelreg serve` replicas on one PostgreSQL database: a change
committed through one reaches watchers of the other at once (LISTEN/NOTIFY,
not the poll), and `modelreg events` reads and follows the log."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from modelregistry import RegistryClient
from modelregistry.v1 import event_service_pb2 as ev
from modelregistry.v1 import event_service_pb2_grpc
from serve_process import free_port

CLI = [sys.executable, "-m", "modelregistry.cli.main"]
# Far longer than any latency the test accepts: only NOTIFY can explain a prompt event.
POLL_S = 30.0


async def wait_serving(address: str, within: float = 30) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        stream = stub.Watch(health_pb2.HealthCheckRequest(), timeout=within, wait_for_ready=True)
        async for reply in stream:
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                stream.cancel()
                return


@pytest.fixture
def replicas(pg_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    addresses, procs = [], []
    for name in ("a", "b"):
        address = f"127.0.0.1:{free_port()}"
        log = (tmp_path / f"{name}.log").open("wb")
        procs.append(
            subprocess.Popen(
                [
                    *CLI,
                    "serve",
                    "--listen",
                    address,
                    "--data-dir",
                    str(tmp_path / name),
                    "--database-url",
                    pg_url,
                    "--watch-poll-interval",
                    str(POLL_S),
                    "--shutdown-grace",
                    "1",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        addresses.append(address)
    try:
        yield addresses[0], addresses[1]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
async def started(replicas: tuple[str, str]) -> AsyncIterator[tuple[str, str]]:
    await asyncio.gather(*(wait_serving(a) for a in replicas))
    yield replicas


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
    assert [e["revision"] for e in lines] == ["4", "5"]
    assert {e["resource"] for e in lines} == {"models/fraud/aliases/production"}

    lister = await asyncio.create_subprocess_exec(
        *[*CLI, "events", "list", "--server", a, "--model", "fraud", "--type", "ALIAS_SET"],
        stdout=asyncio.subprocess.PIPE,
    )
    listed, _ = await asyncio.wait_for(lister.communicate(), 30)
    assert lister.returncode == 0
    rows = listed.decode().splitlines()
    assert rows[0].split() == ["REVISION", "TIME", "TYPE", "RESOURCE", "ACTOR"]
    assert [r.split()[0] for r in rows[1:]] == ["3", "4", "5"]
