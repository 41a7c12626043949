"""When the server is ready, and whether it stays healthy.

Ready means the database answers, the schema is the one this build needs
(upgraded at start unless --no-migrate) and the shared settings are loaded;
until then health says NOT_SERVING and RPCs are refused. Once ready, a
periodic ping keeps health in step with the database.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer
from modelregistry.v1 import (
    access_service_pb2,
    artifact_service_pb2,
    event_service_pb2,
    registry_service_pb2,
    rollout_service_pb2,
    signature_service_pb2,
)

from .config import ServerConfig
from .duties import exclusive
from .service.page_tokens import PageTokens, new_secret
from .store import migrate
from .store.sqlalchemy_store import SqlRegistryStore

log = logging.getLogger("modelreg.server")

REGISTRY_SERVICE = registry_service_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name
ARTIFACT_SERVICE = artifact_service_pb2.DESCRIPTOR.services_by_name["ArtifactService"].full_name
EVENT_SERVICE = event_service_pb2.DESCRIPTOR.services_by_name["EventService"].full_name
ROLLOUT_SERVICE = rollout_service_pb2.DESCRIPTOR.services_by_name["RolloutService"].full_name
SIGNATURE_SERVICE = signature_service_pb2.DESCRIPTOR.services_by_name["SignatureService"].full_name
ACCESS_SERVICE = access_service_pb2.DESCRIPTOR.services_by_name["AccessService"].full_name
# Health reports these names: "" (the whole server) and each API service.
HEALTH_SERVICES = (
    "",
    REGISTRY_SERVICE,
    ARTIFACT_SERVICE,
    EVENT_SERVICE,
    ROLLOUT_SERVICE,
    ACCESS_SERVICE,
    SIGNATURE_SERVICE,
)
PAGE_TOKEN_KEY = "page_token_secret"
# A database that takes longer than this to answer `SELECT 1` counts as down.
PING_TIMEOUT_S = 5.0
MAX_RETRY_S = 1.0


class SchemaOutOfDate(Exception):
    """The database answers but its schema is not the one this build needs."""


async def set_health(servicer: HealthServicer, serving: bool) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for service in HEALTH_SERVICES:
        await servicer.set(service, status)


async def _prepare(
    config: ServerConfig, store: SqlRegistryStore, tokens: PageTokens, migrate_lock: Path | None
) -> None:
    """One attempt at making storage ready: schema, then shared settings.
    Workers starting together upgrade the schema one at a time."""
    engine = store.engine
    if config.migrate:
        async with exclusive(migrate_lock):
            await migrate.upgrade(engine)
    else:
        current = await migrate.current_revision(engine)
        if current != migrate.head_revision():
            raise SchemaOutOfDate(current)
    tokens.set_secret(await store.get_or_create_setting(PAGE_TOKEN_KEY, new_secret))


async def _prepare_until_ready(
    config: ServerConfig, store: SqlRegistryStore, tokens: PageTokens, migrate_lock: Path | None
) -> None:
    """Retry `_prepare` with capped backoff: the database may still be starting,
    or waiting for an operator to run `modelreg db upgrade`. Each distinct
    problem is logged once, not once per attempt."""
    delay = 0.2
    last = ""
    while True:
        try:
            await _prepare(config, store, tokens, migrate_lock)
            return
        except SchemaOutOfDate as exc:
            problem = f"schema:{exc.args[0]}"
            if problem != last:
                log.error(
                    "database schema is out of date: run `modelreg db upgrade`",
                    extra={"schema_revision": exc.args[0], "expected": migrate.head_revision()},
                )
        except Exception as exc:
            problem = type(exc).__name__
            if problem != last:
                log.warning(
                    "database not ready",
                    extra={"error": type(exc).__name__, "detail": str(exc), "retry_in_s": delay},
                )
        last = problem
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_RETRY_S)


async def _database_answers(store: SqlRegistryStore) -> bool:
    try:
        await asyncio.wait_for(store.ping(), PING_TIMEOUT_S)
    except Exception:
        return False
    return True


async def prepare_and_watch(
    config: ServerConfig,
    store: SqlRegistryStore,
    tokens: PageTokens,
    health: HealthServicer,
    ready: asyncio.Event,
    port: int,
    migrate_lock: Path | None = None,
) -> None:
    """Become ready once storage is, then keep health in step with the database."""
    await _prepare_until_ready(config, store, tokens, migrate_lock)
    ready.set()
    await set_health(health, True)
    log.info("ready", extra={"port": port})
    serving = True
    while True:
        await asyncio.sleep(config.health_interval)
        ok = await _database_answers(store)
        if ok != serving:
            serving = ok
            log.warning("database %s", "reachable again" if ok else "unreachable")
            await set_health(health, ok)
