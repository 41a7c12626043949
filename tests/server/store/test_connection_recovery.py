"""The first call after a database blip does not fail where a retry would
succeed: pooled connections the database dropped while idle are replaced
before use, not handed to a request."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg
import pytest
from modelregistry import RegistryClient
from modelregistry_server.config import ServerConfig
from modelregistry_server.events import pg_listener
from modelregistry_server.store.engine import IDLE_CHECK_S
from support.in_process import serving
from support.postgres import libpq_dsn


async def test_a_write_after_the_database_dropped_idle_connections_succeeds(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No background reads meanwhile: the hub (woken by its LISTEN connection
    # dying, or by its poll) or the health check would find the dead
    # connections first and spare the request.
    async def no_listener(*_args: object) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(pg_listener, "listen_forever", no_listener)
    config = ServerConfig(
        listen="127.0.0.1:0",
        data_dir=tmp_path / "data",
        database_url=pg_url,
        watch_poll_interval=60,
        health_interval=60,
    )
    async with serving(config) as running, RegistryClient(f"127.0.0.1:{running.port}") as client:
        for i in range(5):  # fill the pool
            await asyncio.gather(*(client.create_model(f"m{i}-{j}") for j in range(4)))
        await asyncio.sleep(1)  # the hub has read those commits and is idle
        # What a database restart does to every connection of the pool.
        database = pg_url.rsplit("/", 1)[1]
        with psycopg.connect(libpq_dsn(pg_url, "postgres"), autocommit=True) as admin:
            dropped = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            ).fetchone()
        assert dropped is not None and dropped[0] > 0
        await asyncio.sleep(IDLE_CHECK_S + 0.1)
        # Writes are never retried by the SDK: this must simply work.
        await client.create_model("after-the-blip")
        await asyncio.gather(*(client.create_model(f"again-{j}") for j in range(4)))
        assert (await client.get_model("models/after-the-blip")).name == "models/after-the-blip"
