"""Health follows the database: NOT_SERVING until it answers and the schema is
ready, NOT_SERVING while it is unreachable, SERVING again when it returns.

The server reaches PostgreSQL through a TCP proxy the test starts and stops.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from modelregistry.v1 import registry_service_pb2 as rpc
from modelregistry.v1 import registry_service_pb2_grpc
from modelregistry_server.config import ServerConfig
from modelregistry_server.readiness import HEALTH_SERVICES
from modelregistry_server.server import Running, start
from sqlalchemy.engine import make_url
from support.grpc_errors import reason
from support.ports import free_port

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class TcpProxy:
    """Forwards a loopback port to the database; `stop` cuts every connection,
    as a database crash or a network partition would."""

    def __init__(self, port: int, upstream: tuple[str, int]) -> None:
        self.port = port
        self.upstream = upstream
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        await self._server.wait_closed()
        self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            self._writers.discard(writer)
            writer.transport.abort()


@pytest.fixture
async def proxied(pg_url: str, tmp_path: Path) -> AsyncIterator[tuple[Running, TcpProxy]]:
    """A server whose database sits behind a proxy that is not listening yet."""
    url = make_url(pg_url)
    proxy = TcpProxy(free_port(), (url.host or "127.0.0.1", url.port or 5432))
    config = ServerConfig(
        listen="127.0.0.1:0",
        data_dir=tmp_path / "data",
        database_url=url.set(port=proxy.port).render_as_string(hide_password=False),
        health_interval=0.1,
    )
    running = await start(config)
    try:
        yield running, proxy
    finally:
        await running.stop(grace=1)
        with contextlib.suppress(AssertionError):
            await proxy.stop()


async def next_status(updates: Any) -> int:
    reply = await asyncio.wait_for(updates.read(), timeout=15)
    assert isinstance(reply, health_pb2.HealthCheckResponse), "the health watch ended"
    return int(reply.status)


async def test_health_follows_the_database(proxied: tuple[Running, TcpProxy]) -> None:
    running, proxy = proxied
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        registry = registry_service_pb2_grpc.RegistryServiceStub(channel)
        updates = health.Watch(health_pb2.HealthCheckRequest(service=""))

        # Nothing listens where the database should be.
        assert await next_status(updates) == NOT_SERVING
        for service in HEALTH_SERVICES:
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == NOT_SERVING
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await registry.GetModel(rpc.GetModelRequest(name="models/fraud"), timeout=5)
        assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
        assert reason(exc.value) == "NOT_READY"
        assert not running.ready.is_set()

        # The database arrives: schema migrated, then SERVING.
        await proxy.start()
        assert await next_status(updates) == SERVING
        for service in HEALTH_SERVICES:
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == SERVING
        await registry.CreateModel(rpc.CreateModelRequest(model_id="fraud"), timeout=5)

        # It goes away: NOT_SERVING, and RPCs say the storage is unavailable.
        await proxy.stop()
        assert await next_status(updates) == NOT_SERVING
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await registry.GetModel(rpc.GetModelRequest(name="models/fraud"), timeout=10)
        assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
        assert reason(exc.value) == "STORAGE_UNAVAILABLE"

        # It comes back, with the data.
        await proxy.start()
        assert await next_status(updates) == SERVING
        got = await registry.GetModel(rpc.GetModelRequest(name="models/fraud"), timeout=5)
        assert got.name == "models/fraud"
        updates.cancel()
