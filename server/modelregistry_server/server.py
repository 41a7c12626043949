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
    edge_service_pb2,
    edge_service_pb2_grpc,
    registry_service_pb2_grpc,
    rollout_service_pb2_grpc,
    signature_service_pb2_grpc,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from . import access_setup, consistency_setup
from .access_setup import AccessParts
from .allocator import map_large_blocks, trim_forever
from .api import event_servicer, reflection
from .api.artifact_servicer import ArtifactServicer
from .api.artifact_servicer import add_to_server as add_artifact_service
from .api.consistency import AppliedRevision, ConsistencyInterceptor, RevisionWaitInterceptor
from .api.edge_servicer import EdgeServicer
from .api.event_servicer import EventServicer
from .api.interceptors import RequestInterceptor
from .api.registry_servicer import RegistryServicer
from .api.rollout_servicer import RolloutServicer
from .api.signature_servicer import SignatureServicer
from .blob_setup import open_configured_blob_store
from .blobs.base import BlobStore
from .config import MAX_MESSAGE_BYTES, ServerConfig
from .domain.quotas import UploadLimits
from .duties import DutyLock, as_duty
from .edge import setup as edge_setup
from .edge.read_model_sql import SqlReadModel
from .edge.warm_states import SqlWarmStates, WarmStates
from .events import pg_listener
from .events.checkpoints import CheckpointSigner, checkpoint_forever
from .events.compactor import compact_forever
from .events.nats_relay import NatsRelay, relay_settings
from .events.peer_wake import PeerWake
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
    SIGNATURE_SERVICE,
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
from .service.signatures import Signatures
from .service.transfers import TransferLimits, TransferSettings
from .store.engine import make_engine
from .store.event_log import SqlEventLog
from .store.gc_sql import SqlGcStore
from .store.quotas_sql import SqlQuotaStore
from .store.read_routing import ReadRouter
from .store.relay_cursors import SqlRelayCursors
from .store.signature_store import SqlSignatureStore
from .store.sqlalchemy_store import SqlRegistryStore
from .store.upload_store import SqlUploadStore
from .worker_role import WorkerRole

log = logging.getLogger("modelreg.server")

EDGE_SERVICE = edge_service_pb2.DESCRIPTOR.services_by_name["EdgeService"].full_name
REFLECTED_SERVICES = (
    REGISTRY_SERVICE,
    EDGE_SERVICE,
    ACCESS_SERVICE,
    ARTIFACT_SERVICE,
    EVENT_SERVICE,
    ROLLOUT_SERVICE,
    SIGNATURE_SERVICE,
    health.SERVICE_NAME,
    REFLECTION_SERVICE,
)
SERVER_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # One process per port, unless workers share it (see workers.py): a
    # port already taken then fails start-up instead of being shared.
    ("grpc.so_reuseport", 0),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.http2.lookahead_bytes", 8 * 1024 * 1024),
    # Calls that arrived but that the server has not taken up yet: gRPC's
    # defaults (1,000 soft, 3,000 hard, cancelled after 30 s) cancel part of
    # a burst, such as a fleet of watchers reconnecting at once after a
    # restart, which then reconnects again and makes the burst worse.
    ("grpc.server.max_pending_requests", 20_000),
    ("grpc.server.max_pending_requests_hard_limit", 40_000),
    ("grpc.server_max_unrequested_time_in_server", 120),
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
    edge: edge_setup.EdgeParts | None = None
    peers: PeerWake | None = None

    async def stop(self, grace: float | None) -> None:
        await self.health.enter_graceful_shutdown()
        if self.hub is not None:  # watch streams never end by themselves
            self.hub.close()
        await self.server.stop(grace)
        if self.peers is not None:
            self.peers.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.edge is not None:
            await self.edge.close()
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


def check(config: ServerConfig) -> None:
    """Raise ValueError for settings that cannot start (access, TLS files),
    before anything is bound or opened."""
    access_setup.check(access_setup.settings_from(config))
    _credentials(config)


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
    # The newest revision this server has applied (see api/consistency.py).
    applied: AppliedRevision
    reads: ReadRouter | None = None
    # Set when the server is a regional edge (`--upstream`).
    edge: edge_setup.EdgeParts | None = None
    # Set when this process is one of several workers (see workers.py).
    role: WorkerRole | None = None
    peers: PeerWake | None = None

    async def close(self) -> None:
        if self.edge is not None:
            await self.edge.close()
        await self.blobs.close()
        await self.store.close()


async def build(config: ServerConfig, role: WorkerRole | None = None) -> Parts:
    """Storage, services and the gRPC server with every servicer, wired
    together; nothing is bound or started yet. With a `role`, this process
    is one of several workers sharing the port."""
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
    blobs = await open_configured_blob_store(config)
    tokens = PageTokens()
    cache = ReadCache(ttl_s=config.read_cache_s)
    limits = TransferLimits(
        TransferSettings(
            max_downloads=config.max_downloads,
            max_uploads=config.max_uploads,
            download_buffer_bytes=config.download_buffer_mib * 1024 * 1024,
        )
    )
    hub = WatchHub(
        events,
        WatchSettings(
            progress_interval_s=config.watch_progress_interval,
            poll_interval_s=config.watch_poll_interval,
        ),
    )
    relay = None
    applied = AppliedRevision()
    hub.add_listener(
        lambda batch: applied.advance(hub.revision if batch is None else batch[-1].revision)
    )
    edge = None
    if config.upstream:
        # The edge's log is the primary's, copied: nothing of its own may be
        # appended to it, and the primary publishes to the queue.
        relay_config, signer = None, None
        read_model = SqlReadModel(engine)
        read_model.on_commit(hub.notify)
        read_model.on_models_committed(cache.invalidate)
        edge = edge_setup.build(config, read_model, store, blobs, applied, cache.clear)
        blobs = edge.blobs
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
        ArtifactSettings(
            upload_ttl_s=config.upload_ttl_s,
            limits=upload_limits,
            idle_timeout_s=config.upload_idle_timeout_s,
        ),
        limits,
        claims=gc_store,
    )
    if relay_config is not None:
        relay = NatsRelay(events, SqlRelayCursors(engine), relay_config)
    signatures = SqlSignatureStore(engine)
    for writer in (store, uploads, events, signatures):
        # Local writes wake the hub and the relay at once, and drop cached
        # reads before they return; other replicas' writes reach the cache
        # when the hub reads them from the log.
        writer.on_commit(hub.notify)
        if relay is not None:
            writer.on_commit(relay.wake)
        writer.on_models_committed(cache.invalidate)
    peers = None
    if role is not None:
        # Siblings' hubs (and through them their read caches) hear of local
        # commits at once, not at their next poll.
        peers = PeerWake(role.peers, role.index, hub.notify)
        for writer in (store, uploads, events):
            writer.on_commit(peers.notify)
    hub.add_listener(
        lambda batch: cache.clear() if batch is None else cache.invalidate({e.model for e in batch})
    )
    access = access_setup.build(access_settings, engine, tokens)
    access.store.on_commit(hub.notify)
    if peers is not None:
        access.store.on_commit(peers.notify)
    if relay is not None:
        access.store.on_commit(relay.wake)
    # Policy changes and revoked tokens, from any replica, drop access caches.
    hub.add_listener(access.listener())
    if edge is not None:
        edge.follower.add_listener(access.listener())
    writers = [store, uploads, events, access.store]
    reads = consistency_setup.build(config, store, writers, applied)
    warm = WarmStates(SqlWarmStates(engine), config.edge_region_ttl_s)
    ready = asyncio.Event()
    health_servicer = HealthServicer()
    first = RevisionWaitInterceptor(applied, config.min_revision_wait_s)
    inner: list[grpc.aio.ServerInterceptor] = []  # type: ignore[type-arg]
    if edge is not None:
        inner.append(edge.guard)
    inner.append(
        ConsistencyInterceptor(
            applied,
            config.min_revision_wait_s,
            None if edge is not None else _head_revision(events),
        )
    )
    server = _grpc_server(
        ready,
        access,
        first,
        inner,
        health_servicer,
        RegistryServicer(Registry(store, tokens, events, cache, storage, upload_limits)),
        ArtifactServicer(artifacts, collector),
        RolloutServicer(Rollouts(store, tokens), None if edge is not None else warm),
        EventServicer(Events(events, hub, tokens)),
        reuse_port=role is not None,
    )
    edge_service_pb2_grpc.add_EdgeServiceServicer_to_server(EdgeServicer(warm), server)
    signature_service_pb2_grpc.add_SignatureServiceServicer_to_server(
        SignatureServicer(Signatures(signatures, blobs)), server
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
        applied=applied,
        reads=reads,
        edge=edge,
        role=role,
        peers=peers,
    )


def _head_revision(events: SqlEventLog) -> Callable[[], Awaitable[int]]:
    async def head() -> int:
        revision, _ = await events.head()
        return revision

    return head


def _grpc_server(
    ready: asyncio.Event,
    access: AccessParts,
    first: grpc.aio.ServerInterceptor,  # type: ignore[type-arg]
    inner: list[grpc.aio.ServerInterceptor],  # type: ignore[type-arg]
    health_servicer: HealthServicer,
    registry: RegistryServicer,
    artifacts: ArtifactServicer,
    rollouts: RolloutServicer,
    events: EventServicer,
    reuse_port: bool = False,
) -> grpc.aio.Server:
    """The gRPC server with every service, health and reflection; RPCs are
    refused until `ready` is set, and pass `first`, the access gate, then
    the `inner` interceptors."""
    options = SERVER_OPTIONS
    if reuse_port:
        options = [(k, 1 if k == "grpc.so_reuseport" else v) for k, v in SERVER_OPTIONS]
    server = grpc.aio.server(
        interceptors=[
            RpcMetricsInterceptor(),
            first,
            RequestInterceptor(ready.is_set, access.gate),
            *inner,
        ],
        options=options,
    )
    access_service_pb2_grpc.add_AccessServiceServicer_to_server(access.servicer, server)
    registry_service_pb2_grpc.add_RegistryServiceServicer_to_server(registry, server)
    add_artifact_service(artifacts, server)
    rollout_service_pb2_grpc.add_RolloutServiceServicer_to_server(rollouts, server)
    event_servicer.add_to_server(events, server)
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
    compaction. All but the first wait for the schema. Upload expiry, the
    relay, compaction and checkpoints run in one worker only (duties.py)."""
    ready, tasks, role = parts.ready, running.tasks, parts.role
    duty = DutyLock(role.duties_lock if role is not None else None)
    readiness = prepare_and_watch(
        config,
        parts.store,
        parts.tokens,
        parts.health,
        ready,
        running.port,
        role.migrate_lock if role is not None else None,
    )
    tasks.append(asyncio.create_task(readiness))
    tasks.append(asyncio.create_task(trim_forever(), name="memory-trim"))
    reclaim = as_duty(duty, lambda: _when_ready(ready, parts.artifacts.reclaim_forever))
    tasks.append(asyncio.create_task(reclaim))
    if config.gc_interval_s > 0 and parts.edge is None:
        collect = partial(parts.collector.collect_forever, config.gc_interval_s)
        tasks.append(
            asyncio.create_task(as_duty(duty, lambda: _when_ready(ready, collect)), name="gc")
        )
    tasks.append(asyncio.create_task(parts.access.preload()))
    if config.encryption_keyring is not None:
        # Only a keyring loads the encryption code (and `cryptography`); an
        # edge's blobs are then its pull-through layer, not the encrypted store.
        from .blobs.encryption.encrypted_store import EncryptedBlobStore
        from .blobs.encryption.rewrap import log_census

        if isinstance(parts.blobs, EncryptedBlobStore):
            tasks.append(asyncio.create_task(log_census(parts.blobs), name="key-census"))
    if parts.peers is not None:
        parts.peers.start()
    if parts.relay is not None:
        relay_run = parts.relay.run
        relay = as_duty(duty, lambda: _when_ready(ready, relay_run))
        tasks.append(asyncio.create_task(relay, name="nats-relay"))
    if parts.reads is not None:
        tasks.append(asyncio.create_task(_when_ready(ready, parts.reads.run), name="read-replicas"))
    if parts.edge is not None:
        # One worker copies the primary's log and warms the blobs; the
        # others see the copied events through their watch hubs.
        follow, warm = parts.edge.follower.run, parts.edge.warmer.run
        follower = as_duty(duty, lambda: _when_ready(ready, follow))
        tasks.append(asyncio.create_task(follower, name="edge-follower"))
        warmer = as_duty(duty, lambda: _when_ready(ready, warm))
        tasks.append(asyncio.create_task(warmer, name="edge-warmer"))
    else:
        tasks.append(asyncio.create_task(_when_ready(ready, _seed(parts))))
    if config.event_retention_s > 0:
        compact = as_duty(
            duty, lambda: compact_forever(parts.events, config.event_retention_s, ready)
        )
        tasks.append(asyncio.create_task(compact))
    if parts.signer is not None:
        log.info(
            "signing checkpoints of the event log",
            extra={"key_id": parts.signer.key_id, "interval_s": config.checkpoint_interval_s},
        )
        signer = parts.signer
        checkpoints = as_duty(
            duty,
            lambda: checkpoint_forever(parts.events, signer, config.checkpoint_interval_s, ready),
        )
        tasks.append(asyncio.create_task(checkpoints, name="checkpoints"))
    pg_url = config.resolved_database_url() if parts.engine.dialect.name == "postgresql" else None
    tasks.append(
        asyncio.create_task(_when_ready(ready, lambda: _run_hub(parts.hub, pg_url, tasks)))
    )


def _seed(parts: Parts) -> Callable[[], Awaitable[None]]:
    """The primary's reads reflect at least its log's head at start-up."""

    async def seed() -> None:
        revision, _ = await parts.events.head()
        parts.applied.advance(revision)

    return seed


async def start(config: ServerConfig, role: WorkerRole | None = None) -> Running:
    """Bind the port and start serving; health is NOT_SERVING until the
    database answers and the schema is current."""
    creds = _credentials(config)
    parts = await build(config, role)
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
        edge=parts.edge,
        peers=parts.peers,
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
            **({"worker": role.index} if role is not None else {}),
        },
    )
    return running


async def serve(
    config: ServerConfig,
    role: WorkerRole | None = None,
    on_started: Callable[[], None] | None = None,
) -> None:
    """Run until SIGTERM or SIGINT, then drain: health turns NOT_SERVING, new
    RPCs are refused, in-flight ones get `shutdown_grace` seconds to finish.
    `on_started` is called once the port is bound."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    map_large_blocks()
    os.umask(0o077)  # whatever else this process creates is owner-only too
    running = await start(config, role)
    if on_started is not None:
        on_started()
    # Start-up objects (modules, schema, stubs) live as long as the process:
    # keep them out of every collection. Thousands of watch streams make
    # collections frequent; each then scans only what is actually new.
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)
    await stop.wait()
    log.info("shutting down", extra={"grace_s": config.shutdown_grace})
    await running.stop(config.shutdown_grace)
    log.info("stopped")
