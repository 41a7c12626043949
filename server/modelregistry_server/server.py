"""Assembles and runs the gRPC server: storage, services, health, reflection, TLS.

`start` does it in three steps: `build` makes and wires the objects, `bind`
takes the port (with TLS), `start_background` starts the work beside the
RPCs. Health says NOT_SERVING until the database answers and the schema is
current; the background work that needs the schema waits for that too.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha.reflection import SERVICE_NAME as REFLECTION_SERVICE
from modelregistry.v1 import (
    access_service_pb2_grpc,
    artifact_service_pb2_grpc,
    event_service_pb2_grpc,
    registry_service_pb2_grpc,
    rollout_service_pb2_grpc,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from . import access_setup
from .access_setup import AccessParts
from .allocator import map_large_blocks
from .api import reflection
from .api.artifact_servicer import ArtifactServicer
from .api.event_servicer import EventServicer
from .api.interceptors import RequestInterceptor
from .api.registry_servicer import RegistryServicer
from .api.rollout_servicer import RolloutServicer
from .blobs.base import BlobStore
from .blobs.factory import open_blob_store
from .config import MAX_MESSAGE_BYTES, ServerConfig
from .domain.quotas import UploadLimits
from .events import pg_listener
from .events.checkpoints import CheckpointSigner, checkpoint_forever
from .events.compactor import compact_forever
from .events.nats_relay import NatsRelay, relay_settings
from .events.watch_hub import WatchHub
from .events.watcher import WatchSettings
from .observability import exporter as metrics_exporter
from .observability.live import Sources as MetricSources
from .observability.rpc import RpcMetricsInterceptor
from .private_files import private_dir, private_file
from .readiness import (
    ACCESS_SERVICE,
    ARTIFACT_SERVICE,
    EVENT_SERVICE,
    REGISTRY_SERVICE,
    ROLLOUT_SERVICE,
    prepare_and_watch,
    set_health,
)
from .service.artifacts import Artifacts, ArtifactSettings
from .service.events import Events
from .service.gc import MIN_GRACE_S, GarbageCollector
from .service.page_tokens import PageTokens
from .service.read_cache import ReadCache
from .service.registry import Registry
from .service.rollouts import Rollouts
from .service.transfers import TransferLimits, TransferSettings
from .store.engine import make_engine
from .store.event_log import SqlEventLog
from .store.gc_sql import SqlGcStore
from .store.quotas_sql import SqlQuotaStore
from .store.relay_cursors import SqlRelayCursors
from .store.sqlalchemy_store import SqlRegistryStore
from .store.upload_store import SqlUploadStore

log = logging.getLogger("modelreg.server")

REFLECTED_SERVICES = (
    REGISTRY_SERVICE,
    ACCESS_SERVICE,
    ARTIFACT_SERVICE,
    EVENT_SERVICE,
    ROLLOUT_SERVICE,
    health.SERVICE_NAME,
    REFLECTION_SERVICE,
)
SERVER_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.http2.lookahead_bytes", 8 * 1024 * 1024),
    # Room for a bearer token: an oversized one gets UNAUTHENTICATED from the
    # gate rather than a transport error.
    ("grpc.max_metadata_size", 64 * 1024),
]


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


async def _when_ready(ready: asyncio.Event, work: Callable[[], Awaitable[None]]) -> None:
    """Background work that needs the schema: wait for it, then run."""
    await ready.wait()
    await work()


async def _run_hub(hub: WatchHub, pg_url: str | None, tasks: list[asyncio.Task[None]]) -> None:
    """On PostgreSQL, also LISTEN so that commits through other replicas wake
    the hub at once."""
    if pg_url is not None:
        tasks.append(asyncio.create_task(pg_listener.listen_forever(pg_url, hub.notify)))
    await hub.run()


@dataclass
class Parts:
    """What the server is made of, before it binds a port or starts any work."""

    engine: AsyncEngine
    store: SqlRegistryStore
    uploads: SqlUploadStore
    # The one event log: the registry's history reads, the hub, the listing
    # service, the relay and the compactor all go through it.
    events: SqlEventLog
    blobs: BlobStore
    tokens: PageTokens
    cache: ReadCache
    artifacts: Artifacts
    collector: GarbageCollector
    hub: WatchHub
    relay: NatsRelay | None
    access: AccessParts
    signer: CheckpointSigner | None
    health: HealthServicer
    ready: asyncio.Event
    server: grpc.aio.Server

    async def close(self) -> None:
        await self.blobs.close()
        await self.store.close()


async def build(config: ServerConfig) -> Parts:
    """Storage, services and the gRPC server with every servicer, wired
    together; nothing is bound or started yet."""
    access_settings = access_setup.settings_from(config)
    access_setup.check(access_settings)
    relay_config = relay_settings(config)
    signer = None
    if config.checkpoint_key is not None:
        signer = CheckpointSigner.from_file(config.checkpoint_key)  # ValueError: cannot start
    private_dir(config.data_dir)
    database_url = config.resolved_database_url()
    if not config.database_url:  # the embedded database lives in the data directory
        private_file(config.data_dir / "registry.db")
    engine = make_engine(database_url, pool_size=config.db_pool_size)
    store = SqlRegistryStore(engine)
    uploads = SqlUploadStore(engine)
    events = SqlEventLog(engine)
    blobs = await open_blob_store(config.resolved_blob_store(), config.s3_endpoint_url)
    tokens = PageTokens()
    cache = ReadCache(ttl_s=config.read_cache_s)
    limits = TransferLimits(
        TransferSettings(
            max_downloads=config.max_downloads,
            max_uploads=config.max_uploads,
            download_buffer_bytes=config.download_buffer_mib * 1024 * 1024,
        )
    )
    upload_limits = UploadLimits(
        int(config.default_model_quota_bytes), config.max_open_uploads_per_principal
    )
    storage = partial(SqlQuotaStore(engine).storage, limits=upload_limits)
    gc_store = SqlGcStore(engine)
    collector = GarbageCollector(gc_store, blobs, max(config.gc_grace_s, MIN_GRACE_S))
    artifacts = Artifacts(
        store,
        uploads,
        blobs,
        ArtifactSettings(upload_ttl_s=config.upload_ttl_s, limits=upload_limits),
        limits,
        claims=gc_store,
    )
    hub = WatchHub(
        events,
        WatchSettings(
            progress_interval_s=config.watch_progress_interval,
            poll_interval_s=config.watch_poll_interval,
        ),
    )
    relay = None
    if relay_config is not None:
        relay = NatsRelay(events, SqlRelayCursors(engine), relay_config)
    for writer in (store, uploads, events):
        # Local writes wake the hub and the relay at once, and drop cached
        # reads before they return; other replicas' writes reach the cache
        # when the hub reads them from the log.
        writer.on_commit(hub.notify)
        if relay is not None:
            writer.on_commit(relay.wake)
        writer.on_models_committed(cache.invalidate)
    hub.add_listener(
        lambda batch: cache.clear() if batch is None else cache.invalidate({e.model for e in batch})
    )
    access = access_setup.build(access_settings, engine, tokens)
    access.store.on_commit(hub.notify)
    if relay is not None:
        access.store.on_commit(relay.wake)
    # Policy changes and revoked tokens, from any replica, drop access caches.
    hub.add_listener(access.listener())
    ready = asyncio.Event()
    health_servicer = HealthServicer()
    server = _grpc_server(
        ready,
        access,
        health_servicer,
        RegistryServicer(Registry(store, tokens, history=events, cache=cache, storage=storage)),
        ArtifactServicer(artifacts, collector),
        RolloutServicer(Rollouts(store, tokens)),
        EventServicer(Events(events, hub, tokens)),
    )
    return Parts(
        engine=engine,
        store=store,
        uploads=uploads,
        events=events,
        blobs=blobs,
        tokens=tokens,
        cache=cache,
        artifacts=artifacts,
        collector=collector,
        hub=hub,
        relay=relay,
        access=access,
        signer=signer,
        health=health_servicer,
        ready=ready,
        server=server,
    )


def _grpc_server(
    ready: asyncio.Event,
    access: AccessParts,
    health_servicer: HealthServicer,
    registry: RegistryServicer,
    artifacts: ArtifactServicer,
    rollouts: RolloutServicer,
    events: EventServicer,
) -> grpc.aio.Server:
    """The gRPC server with every service, health and reflection; RPCs are
    refused until `ready` is set, and pass the access gate."""
    server = grpc.aio.server(
        interceptors=[RpcMetricsInterceptor(), RequestInterceptor(ready.is_set, access.gate)],
        options=SERVER_OPTIONS,
    )
    access_service_pb2_grpc.add_AccessServiceServicer_to_server(access.servicer, server)
    registry_service_pb2_grpc.add_RegistryServiceServicer_to_server(registry, server)
    artifact_service_pb2_grpc.add_ArtifactServiceServicer_to_server(artifacts, server)
    rollout_service_pb2_grpc.add_RolloutServiceServicer_to_server(rollouts, server)
    event_service_pb2_grpc.add_EventServiceServicer_to_server(events, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable(REFLECTED_SERVICES, server)
    return server


def bind(server: grpc.aio.Server, listen: str, creds: grpc.ServerCredentials | None) -> int:
    """Listen on `listen` (with TLS when `creds` are given); returns the port."""
    try:
        if creds is None:
            port = server.add_insecure_port(listen)
        else:
            port = server.add_secure_port(listen, creds)
    except RuntimeError:  # grpc's way of saying the address is taken or invalid
        port = 0
    if port == 0:
        raise OSError(f"cannot listen on {listen}: address in use or unavailable")
    return port


def start_background(config: ServerConfig, parts: Parts, running: Running) -> None:
    """The work that runs beside the RPCs: readiness and health, upload
    expiry, the watch hub, and (if configured) the queue relay and event
    compaction. All but the first wait for the schema."""
    ready, tasks = parts.ready, running.tasks
    readiness = prepare_and_watch(
        config, parts.store, parts.tokens, parts.health, ready, running.port
    )
    tasks.append(asyncio.create_task(readiness))
    tasks.append(asyncio.create_task(_when_ready(ready, parts.artifacts.reclaim_forever)))
    if config.gc_interval_s > 0:
        collect = partial(parts.collector.collect_forever, config.gc_interval_s)
        tasks.append(asyncio.create_task(_when_ready(ready, collect), name="gc"))
    tasks.append(asyncio.create_task(parts.access.preload()))
    if parts.relay is not None:
        tasks.append(asyncio.create_task(_when_ready(ready, parts.relay.run), name="nats-relay"))
    if config.event_retention_s > 0:
        tasks.append(
            asyncio.create_task(compact_forever(parts.events, config.event_retention_s, ready))
        )
    if parts.signer is not None:
        log.info(
            "signing checkpoints of the event log",
            extra={"key_id": parts.signer.key_id, "interval_s": config.checkpoint_interval_s},
        )
        checkpoints = checkpoint_forever(
            parts.events, parts.signer, config.checkpoint_interval_s, ready
        )
        tasks.append(asyncio.create_task(checkpoints, name="checkpoints"))
    pg_url = config.resolved_database_url() if parts.engine.dialect.name == "postgresql" else None
    tasks.append(
        asyncio.create_task(_when_ready(ready, lambda: _run_hub(parts.hub, pg_url, tasks)))
    )


async def start(config: ServerConfig) -> Running:
    """Bind the port and start serving; health is NOT_SERVING until the
    database answers and the schema is current."""
    creds = _credentials(config)
    parts = await build(config)
    try:
        port = bind(parts.server, config.listen, creds)
    except OSError:
        await parts.close()
        raise
    await set_health(parts.health, False)
    sources = MetricSources(parts.health, parts.hub, parts.cache, parts.engine, parts.blobs)
    exporter_tasks = metrics_exporter.start(config.metrics_listen, sources)
    await parts.server.start()
    running = Running(
        parts.server,
        port,
        parts.store,
        parts.blobs,
        parts.health,
        ready=parts.ready,
        hub=parts.hub,
    )
    running.tasks.extend(exporter_tasks)
    start_background(config, parts, running)
    log.info(
        "listening",
        extra={
            "listen": config.listen,
            "port": port,
            "tls": creds is not None,
            "auth": config.auth,
        },
    )
    return running


async def serve(config: ServerConfig) -> None:
    """Run until SIGTERM or SIGINT, then drain: health turns NOT_SERVING, new
    RPCs are refused, in-flight ones get `shutdown_grace` seconds to finish."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    map_large_blocks()
    os.umask(0o077)  # whatever else this process creates is owner-only too
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
