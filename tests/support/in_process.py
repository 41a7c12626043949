"""A real grpc.aio server inside the test's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from modelregistry_server.config import ServerConfig
from modelregistry_server.server import Running, start


async def start_server(config: ServerConfig) -> Running:
    """Bind and start, then wait (30 s at most) until storage is ready."""
    running = await start(config)
    await asyncio.wait_for(running.ready.wait(), timeout=30)
    return running


@contextlib.asynccontextmanager
async def serving(config: ServerConfig) -> AsyncIterator[Running]:
    """A started, ready server, stopped (1 s grace) afterwards."""
    running = await start_server(config)
    try:
        yield running
    finally:
        await running.stop(grace=1)
