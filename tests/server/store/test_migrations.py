"""The migrations build exactly the schema the code declares, and a server told
not to migrate waits, unready, for someone to upgrade the schema."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import grpc
import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from modelregistry_server.config import ServerConfig
from modelregistry_server.server import start
from modelregistry_server.store import migrate
from modelregistry_server.store.engine import make_engine
from modelregistry_server.store.tables import metadata


def _differences(sync_conn: Any) -> list[Any]:
    context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


async def test_migrated_schema_matches_the_tables(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) == migrate.head_revision()
        async with engine.connect() as conn:
            differences = await conn.run_sync(_differences)
            recorded = await conn.run_sync(
                lambda sync_conn: MigrationContext.configure(sync_conn).get_current_revision()
            )
        assert differences == []
        assert recorded == migrate.head_revision(), "the plain read agrees with Alembic's"
        # A second upgrade (another replica starting) is a no-op.
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()


def test_head_read_from_the_scripts_is_alembics() -> None:
    """The server tells whether an upgrade is due without importing Alembic,
    from the scripts' own `revision` lines: it must name Alembic's head."""
    config = Config()
    config.set_main_option("script_location", str(migrate.MIGRATIONS))
    assert migrate._scripts_head() == ScriptDirectory.from_config(config).get_current_head()


async def test_no_schema_has_no_revision(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert await migrate.current_revision(engine) is None
    finally:
        await engine.dispose()


async def test_no_migrate_waits_for_the_schema(
    sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="modelreg.server")
    config = ServerConfig(
        listen="127.0.0.1:0", data_dir=tmp_path / "data", database_url=sqlite_url, migrate=False
    )
    running = await start(config)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            updates = health.Watch(health_pb2.HealthCheckRequest())
            first = await asyncio.wait_for(updates.read(), timeout=5)
            assert isinstance(first, health_pb2.HealthCheckResponse)
            assert first.status == health_pb2.HealthCheckResponse.NOT_SERVING
            await asyncio.sleep(0.7)  # a few attempts at 0.2 s, 0.4 s...
            reply = await health.Check(health_pb2.HealthCheckRequest())
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
            complaints = [
                r for r in caplog.records if r.getMessage().startswith("database schema is out")
            ]
            assert len(complaints) == 1, "logged once, not on every retry"
            assert complaints[0].levelno == logging.ERROR
            assert getattr(complaints[0], "expected", None) == migrate.head_revision()
            assert "modelreg db upgrade" in complaints[0].getMessage()

            # The operator upgrades; the server notices and becomes ready.
            engine = make_engine(sqlite_url)
            try:
                await migrate.upgrade(engine)
            finally:
                await engine.dispose()
            serving = await asyncio.wait_for(updates.read(), timeout=10)
            assert isinstance(serving, health_pb2.HealthCheckResponse)
            assert serving.status == health_pb2.HealthCheckResponse.SERVING
            assert running.ready.is_set()
            updates.cancel()
    finally:
        await running.stop(grace=1)
