"""Assembles and runs the gRPC server: storage, services, health, reflection, TLS."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha.reflection import SERVICE_NAME as REFLECTION_SERVICE
from modelregistry.v1 import (
    artifact_service_pb2,
    artifact_service_pb2_grpc,
    event_service_pb2,
    event_service_pb2_grpc,
    registry_service_pb2,
    registry_service_pb2_grpc,
    rollout_service_pb2,
    rollout_service_pb2_grpc,
)

from .api import reflection
from .api.artifact_servicer import ArtifactServicer
from .api.event_servicer import EventServicer
from .api.interceptors import RequestInterceptor
from .api.registry_servicer import RegistryServicer
from .api.rollout_servicer import RolloutServicer
from .blobs.base import BlobStore
from .blobs.factory import open_blob_store
from .config import MAX_MESSAGE_BYTES, ServerConfig
from .events import pg_listener
from .events.compactor import compact_forever
from .events.nats_relay import relay_settings, start_relay
from .events.watch_hub import WatchHub
from .events.watcher import WatchSettings
from .observability import exporter as metrics_exporter
from .observability.live import Sources as MetricSources
from .observability.rpc import RpcMetricsInterceptor
from .service.artifacts import Artifacts, ArtifactSettings
from .service.events import Events
from .service.page_tokens import PageTokens, new_secret
from .service.read_cache import ReadCache
from .service.registry import Registry
from .service.rollouts import Rollouts
from .store import migrate
from .store.engine import make_engine
from .store.event_log import SqlEventLog
from .store.sqlalchemy_store import SqlRegistryStore
from .store.upload_store import SqlUploadStore

log = logging.getLogger("modelreg.server")

REGISTRY_SERVICE = registry_service_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name
ARTIFACT_SERVICE = artifact_service_pb2.DESCRIPTOR.services_by_name["ArtifactService"].full_name
EVENT_SERVICE = event_service_pb2.DESCRIPTOR.services_by_name["EventService"].full_name
ROLLOUT_SERVICE = rollout_service_pb2.DESCRIPTOR.services_by_name["RolloutService"].full_name
# Health reports these names: "" (the whole server) and each API service.
HEALTH_SERVICES = ("", REGISTRY_SERVICE, ARTIFACT_SERVICE, EVENT_SERVICE, ROLLOUT_SERVICE)
PAGE_TOKEN_KEY = "page_token_secret"
# A database that takes longer than this to answer `SELECT 1` counts as down.
PING_TIMEOUT_S = 5.0
MAX_RETRY_S = 1.0


class SchemaOutOfDate(Exception):
    """The database answers but its schema is not the one this build needs."""


@dataclass
class Running:
    """A started server: its bound port and what `stop` must release."""

    server: grpc.aio.Server
    port: int
    store: SqlRegistryStore
    blobs: BlobStore
    health: HealthServicer
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    hub: WatchHub | None = None

    async def stop(self, grace: float | None) -> None:
        await self.health.enter_graceful_shutdown()
        if self.hub is not None:  # watch streams never end by themselves
            self.hub.close()
        await self.server.stop(grace)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.blobs.close()
        await self.store.close()


def _credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    """TLS from the flags; a client CA alone must not silently mean plaintext."""
    if not config.tls_cert:
        if config.tls_key or config.tls_client_ca:
            raise ValueError("--tls-key and --tls-client-ca need --tls-cert")
        return None
    if not config.tls_key:
        raise ValueError("--tls-cert needs --tls-key")
    pair = (config.tls_key.read_bytes(), config.tls_cert.read_bytes())
    client_ca = config.tls_client_ca.read_bytes() if config.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [pair], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


async def _set_health(servicer: HealthServicer, serving: bool) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for service in HEALTH_SERVICES:
        await servicer.set(service, status)


async def _prepare(config: ServerConfig, store: SqlRegistryStore, tokens: PageTokens) -> None:
    """One attempt at making storage ready: schema, then shared settings."""
    engine = store.engine
    if config.migrate:
        await migrate.upgrade(engine)
    else:
        current = await migrate.current_revision(engine)
        if current != migrate.head_revision():
            raise SchemaOutOfDate(current)
    tokens.set_secret(await store.get_or_create_setting(PAGE_TOKEN_KEY, new_secret))


async def _prepare_until_ready(
    config: ServerConfig, store: SqlRegistryStore, tokens: PageTokens
) -> None:
    """Retry `_prepare` with capped backoff: the database may still be starting,
    or waiting for an operator to run `modelreg db upgrade`. Each distinct
    problem is logged once, not once per attempt."""
    delay = 0.2
    last = ""
    while True:
        try:
            await _prepare(config, store, tokens)
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


async def _prepare_and_watch(
    config: ServerConfig, store: SqlRegistryStore, tokens: PageTokens, running: Running
) -> None:
    """Become ready once storage is, then keep health in step with the database."""
    await _prepare_until_ready(config, store, tokens)
    running.ready.set()
    await _set_health(running.health, True)
    log.info("ready", extra={"port": running.port})
    serving = True
    while True:
        await asyncio.sleep(config.health_interval)
        ok = await _database_answers(store)
        if ok != serving:
            serving = ok
            log.warning("database %s", "reachable again" if ok else "unreachable")
            await _set_health(running.health, ok)


async def _reclaim_when_ready(artifacts: Artifacts, ready: asyncio.Event) -> None:
    await ready.wait()
    await artifacts.reclaim_forever()


async def _run_hub_when_ready(
    hub: WatchHub, ready: asyncio.Event, pg_url: str | None, tasks: list[asyncio.Task[None]]
) -> None:
    """Start the hub once the schema is there; on PostgreSQL, also LISTEN so
    that commits through other replicas wake it at once."""
    await ready.wait()
    if pg_url is not None:
        tasks.append(asyncio.create_task(pg_listener.listen_forever(pg_url, hub.notify)))
    await hub.run()


async def start(config: ServerConfig) -> Running:
    """Bind the port and start serving; health is NOT_SERVING until the
    database answers and the schema is current."""
    creds = _credentials(config)
    nats_settings = relay_settings(config)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(config.resolved_database_url(), pool_size=config.db_pool_size)
    store = SqlRegistryStore(engine)
    tokens = PageTokens()
    cache = ReadCache(ttl_s=config.read_cache_s)
    registry = Registry(store, tokens, history=SqlEventLog(engine), cache=cache)
    blobs = await open_blob_store(config.resolved_blob_store(), config.s3_endpoint_url)
    uploads = SqlUploadStore(engine)
    artifacts = Artifacts(store, uploads, blobs, ArtifactSettings(upload_ttl_s=config.upload_ttl_s))
    hub = WatchHub(
        SqlEventLog(engine),
        WatchSettings(
            progress_interval_s=config.watch_progress_interval,
            poll_interval_s=config.watch_poll_interval,
        ),
    )
    store.on_commit(hub.notify)
    uploads.on_commit(hub.notify)
    # Local writes drop cached reads before they return; other replicas'
    # writes when the hub reads them from the log.
    store.on_models_committed(cache.invalidate)
    uploads.on_models_committed(cache.invalidate)
    hub.add_listener(
        lambda batch: cache.clear() if batch is None else cache.invalidate({e.model for e in batch})
    )
    health_servicer = HealthServicer()
    ready = asyncio.Event()
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.so_reuseport", 0),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.lookahead_bytes", 8 * 1024 * 1024),
    ]
    interceptors = [RpcMetricsInterceptor(), RequestInterceptor(ready.is_set)]
    server = grpc.aio.server(interceptors=interceptors, options=options)
    registry_service_pb2_grpc.add_RegistryServiceServicer_to_server(
        RegistryServicer(registry), server
    )
    artifact_service_pb2_grpc.add_ArtifactServiceServicer_to_server(
        ArtifactServicer(artifacts), server
    )
    rollout_service_pb2_grpc.add_RolloutServiceServicer_to_server(
        RolloutServicer(Rollouts(store, tokens)), server
    )
    event_service_pb2_grpc.add_EventServiceServicer_to_server(
        EventServicer(Events(SqlEventLog(engine), hub, tokens)), server
    )
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable(
        (
            REGISTRY_SERVICE,
            ARTIFACT_SERVICE,
            EVENT_SERVICE,
            ROLLOUT_SERVICE,
            health.SERVICE_NAME,
            REFLECTION_SERVICE,
        ),
        server,
    )
    try:
        if creds is None:
            port = server.add_insecure_port(config.listen)
        else:
            port = server.add_secure_port(config.listen, creds)
    except RuntimeError:  # grpc's way of saying the address is taken or invalid
        port = 0
    if port == 0:
        await store.close()
        raise OSError(f"cannot listen on {config.listen}: address in use or unavailable")
    await _set_health(health_servicer, False)
    sources = MetricSources(health_servicer, hub, cache, engine, blobs)
    exporter_tasks = metrics_exporter.start(config.metrics_listen, sources)
    await server.start()
    running = Running(server, port, store, blobs, health_servicer, ready=ready, hub=hub)
    running.tasks.extend(exporter_tasks)
    running.tasks.append(asyncio.create_task(_prepare_and_watch(config, store, tokens, running)))
    running.tasks.append(asyncio.create_task(_reclaim_when_ready(artifacts, ready)))
    if nats_settings is not None:
        running.tasks.append(start_relay(nats_settings, engine, (store, uploads), ready))
    if config.event_retention_s > 0:
        running.tasks.append(
            asyncio.create_task(
                compact_forever(SqlEventLog(engine), config.event_retention_s, ready)
            )
        )
    running.tasks.append(
        asyncio.create_task(
            _run_hub_when_ready(
                hub,
                ready,
                config.resolved_database_url() if engine.dialect.name == "postgresql" else None,
                running.tasks,
            )
        )
    )
    log.info(
        "listening",
        extra={"listen": config.listen, "port": port, "tls": creds is not None},
    )
    return running


async def serve(config: ServerConfig) -> None:
    """Run until SIGTERM or SIGINT, then drain: health turns NOT_SERVING, new
    RPCs are refused, in-flight ones get `shutdown_grace` seconds to finish."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    running = await start(config)
    # Start-up objects (modules, schema, stubs) live as long as the process:
    # keep them out of every collection. Thousands of watch streams make
    # collections frequent; each then scans only what is actually new.
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)
    await stop.wait()
    log.info("shutting down", extra={"grace_s": config.shutdown_grace})
    await running.stop(config.shutdown_grace)
    log.info("stopped")
