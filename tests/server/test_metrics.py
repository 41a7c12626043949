"""`--metrics-listen`: what an operator's Prometheus and load balancer see.

A real server on loopback; the test drives traffic through the SDK and reads
/metrics, /healthz and /readyz over HTTP as a scraper would. Counters are
process-wide, so each check compares a scrape before and after.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from modelregistry import RegistryClient
from modelregistry.errors import NotFoundError
from modelregistry_server import probe
from modelregistry_server.config import ServerConfig
from modelregistry_server.server import Running, start
from prometheus_client.parser import text_string_to_metric_families
from support.in_process import start_server
from support.ports import free_port, port_open
from support.services import require

Sample = tuple[str, frozenset[tuple[str, str]]]
GET_MODEL = "/modelregistry.v1.RegistryService/GetModel"
CREATE_MODEL = "/modelregistry.v1.RegistryService/CreateModel"
WATCH = "/modelregistry.v1.EventService/Watch"


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return int(reply.status), reply.read().decode()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read().decode()


async def http_get(port: int, path: str) -> tuple[int, str]:
    """From a thread: the exporter answers live figures through this event loop."""
    return await asyncio.to_thread(_get, f"http://127.0.0.1:{port}{path}")


async def scrape(port: int) -> dict[Sample, float]:
    status, text = await http_get(port, "/metrics")
    assert status == 200, text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict[Sample, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
async def metered(tmp_path: Path) -> AsyncIterator[tuple[Running, int]]:
    port = free_port()
    running = await start_server(
        ServerConfig(
            listen="127.0.0.1:0",
            data_dir=tmp_path / "data",
            metrics_listen=f"127.0.0.1:{port}",
            read_cache_s=60,
        )
    )
    try:
        yield running, port
    finally:
        await running.stop(grace=1)


async def test_metrics_follow_traffic(metered: tuple[Running, int], tmp_path: Path) -> None:
    running, port = metered
    assert await asyncio.to_thread(probe.main, ["--address", f"127.0.0.1:{running.port}"]) == 0
    before = await scrape(port)
    data = os.urandom(300 * 1024)
    (tmp_path / "model.bin").write_bytes(data)
    async with RegistryClient(f"127.0.0.1:{running.port}") as client:
        watch = client.watch_stream()
        responses = aiter(watch.responses())
        await anext(responses)  # the stream is open once its first message came
        await client.create_model("fraud")
        version = await client.create_model_version("models/fraud")
        await client.push(version.name, tmp_path / "model.bin")
        await client.set_alias("models/fraud/aliases/production", version.name)
        for _ in range(3):
            await client.get_model("models/fraud")
        with pytest.raises(NotFoundError):
            await client.get_model("models/absent")
        await client.pull("models/fraud/aliases/production", tmp_path / "out")
        during = await scrape(port)
        last = await client.list_events_page(page_size=1000)
        head = max(e.revision for e in last.events)
    after = await scrape(port)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    for _ in range(50):  # the server learns of the closed stream shortly after
        if grew("modelreg_rpc_handled_total", method=WATCH, type="server_stream", code="CANCELLED"):
            break
        await asyncio.sleep(0.1)
        after = await scrape(port)

    # RPCs by method and code, with their latency.
    assert grew("modelreg_rpc_handled_total", method=CREATE_MODEL, type="unary", code="OK") == 1
    assert grew("modelreg_rpc_handled_total", method=GET_MODEL, type="unary", code="NOT_FOUND") == 1
    assert grew("modelreg_rpc_handled_total", method=GET_MODEL, type="unary", code="OK") == 3
    assert (
        grew("modelreg_rpc_duration_seconds_count", method=GET_MODEL, type="unary", code="OK") == 3
    )
    # The watch stream was open during the traffic, and ended cancelled.
    assert value(during, "modelreg_watch_streams") == 1
    assert value(during, "modelreg_rpc_in_flight", method=WATCH, type="server_stream") >= 1
    assert value(after, "modelreg_watch_streams") == 0
    assert grew("modelreg_rpc_handled_total", method=WATCH, type="server_stream", code="CANCELLED")
    # Bytes both ways: the file plus its manifest.
    assert grew("modelreg_artifact_uploaded_bytes_total") > len(data)
    assert grew("modelreg_artifact_downloaded_bytes_total") >= len(data)
    assert value(after, "modelreg_artifact_transfers_in_flight", direction="upload") == 0
    # The event log and how fast its events reached the watch hub.
    assert value(after, "modelreg_event_log_head_revision") == head
    assert grew("modelreg_watch_delivery_seconds_count") >= 4
    assert value(after, "modelreg_watch_lag_events") == 0
    # Repeated GetModel calls are served from the read cache (the first
    # after a write misses, and so may the second if the hub read the write's
    # event in between).
    assert grew("modelreg_read_cache_hits_total") >= 1
    assert grew("modelreg_read_cache_misses_total") >= 1
    # The process and the database pool.
    assert value(after, "modelreg_serving") == 1
    assert value(after, "modelreg_db_pool_max_connections") > 0
    assert value(after, "process_resident_memory_bytes") > 10_000_000
    assert value(after, "modelreg_build_info", version="0.1.0") == 1


async def test_http_health_follows_grpc_health(tmp_path: Path) -> None:
    """A database whose schema is not upgraded (and --no-migrate): the process
    lives, but neither gRPC health nor /readyz says it can serve."""
    port = free_port()
    running = await start(
        ServerConfig(
            listen="127.0.0.1:0",
            data_dir=tmp_path / "data",
            migrate=False,
            metrics_listen=f"127.0.0.1:{port}",
        )
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
        address = ["--address", f"127.0.0.1:{running.port}"]
        assert await asyncio.to_thread(probe.main, address) == 1
        assert await http_get(port, "/healthz") == (200, "ok\n")
        assert await http_get(port, "/readyz") == (503, "not serving\n")
        assert (await http_get(port, "/nothing"))[0] == 404
        assert value(await scrape(port), "modelreg_serving") == 0
    finally:
        await running.stop(grace=1)
    assert not port_open("127.0.0.1", port), "the exporter outlived the server"


async def test_a_taken_metrics_port_fails_start(tmp_path: Path) -> None:
    port = free_port()
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", port)
    try:
        with pytest.raises(OSError):
            await start(
                ServerConfig(
                    listen="127.0.0.1:0",
                    data_dir=tmp_path / "data",
                    metrics_listen=f"127.0.0.1:{port}",
                )
            )
    finally:
        blocker.close()
        await blocker.wait_closed()


async def test_relay_lag_is_shown_where_the_relay_publishes(tmp_path: Path) -> None:
    if not port_open("127.0.0.1", 4222):
        require("NATS is not reachable at 127.0.0.1:4222")
    port = free_port()
    tag = uuid.uuid4().hex[:10]
    running = await start_server(
        ServerConfig(
            listen="127.0.0.1:0",
            data_dir=tmp_path / "data",
            metrics_listen=f"127.0.0.1:{port}",
            events_nats="nats://127.0.0.1:4222",
            events_nats_stream=f"MODELREG_TEST_{tag}",
            events_nats_subject_prefix=f"modelreg.test{tag}",
        )
    )
    try:
        async with RegistryClient(f"127.0.0.1:{running.port}") as client:
            await client.create_model("fraud")
            await client.create_model_version("models/fraud")
        deadline = time.monotonic() + 60
        while True:
            samples = await scrape(port)
            head = value(samples, "modelreg_event_log_head_revision")
            lag = samples.get(("modelreg_relay_lag_events", frozenset()))
            if head >= 2 and lag == 0:
                break
            assert time.monotonic() < deadline, f"head {head}, relay lag {lag}"
            await asyncio.sleep(0.2)
    finally:
        await running.stop(grace=1)
        await _delete_stream(f"MODELREG_TEST_{tag}")


async def _delete_stream(name: str) -> None:
    import nats

    with contextlib.suppress(Exception):
        nc = await nats.connect("nats://127.0.0.1:4222", allow_reconnect=False)
        try:
            await nc.jetstream().delete_stream(name)
        finally:
            await nc.close()
