"""Assembles and runs the gRPC server: storage, services, health, reflection, TLS."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from modelregistry.v1 import registry_service_pb2, registry_service_pb2_grpc

from .api.interceptors import RequestInterceptor
from .api.registry_servicer import RegistryServicer
from .config import MAX_MESSAGE_BYTES, ServerConfig
from .domain.errors import DomainError
from .service.page_tokens import PageTokens, new_secret
from .service.registry import Registry
from .store import migrate
from .store.engine import make_engine
from .store.sqlalchemy_store import SqlRegistryStore

log = logging.getLogger("modelreg.server")

REGISTRY_SERVICE = registry_service_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name
PAGE_TOKEN_KEY = "page_token_secret"
HEALTH_INTERVAL_S = 2.0


@dataclass
class Running:
    """A started server: its bound port and what `stop` must release."""

    server: grpc.aio.Server
    port: int
    store: SqlRegistryStore
    health: HealthServicer
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def stop(self, grace: float | None) -> None:
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.store.close()


def _credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    if not config.tls_cert:
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
    for service in ("", REGISTRY_SERVICE):
        await servicer.set(service, status)


async def _prepare_and_watch(
    config: ServerConfig, store: SqlRegistryStore, tokens: PageTokens, running: Running
) -> None:
    """Migrate and load shared settings once the database answers, then keep
    health in step with the database."""
    engine = store.engine
    delay = 0.2
    while True:
        try:
            if config.migrate:
                await migrate.upgrade(engine)
            else:
                current = await migrate.current_revision(engine)
                if current != migrate.head_revision():
                    log.error(
                        "database schema is at %s, expected %s: run `modelreg db upgrade`",
                        current,
                        migrate.head_revision(),
                    )
                    raise DomainError("SCHEMA_OUT_OF_DATE", "schema out of date")
            tokens.set_secret(await store.get_or_create_setting(PAGE_TOKEN_KEY, new_secret))
            break
        except Exception as exc:  # retried: the database may still be starting
            log.warning("database not ready: %s", type(exc).__name__, extra={"retry_in_s": delay})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
    running.ready.set()
    await _set_health(running.health, True)
    log.info("ready", extra={"port": running.port})
    serving = True
    while True:
        await asyncio.sleep(HEALTH_INTERVAL_S)
        try:
            await store.ping()
            ok = True
        except Exception:
            ok = False
        if ok != serving:
            serving = ok
            log.warning("database %s", "reachable again" if ok else "unreachable")
            await _set_health(running.health, ok)


async def start(config: ServerConfig) -> Running:
    """Bind the port and start serving; health is NOT_SERVING until the
    database answers and the schema is current."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(config.resolved_database_url(), pool_size=config.db_pool_size)
    store = SqlRegistryStore(engine)
    tokens = PageTokens()
    registry = Registry(store, tokens)
    health_servicer = HealthServicer()
    ready = asyncio.Event()
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.so_reuseport", 0),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    server = grpc.aio.server(interceptors=[RequestInterceptor(ready.is_set)], options=options)
    registry_service_pb2_grpc.add_RegistryServiceServicer_to_server(
        RegistryServicer(registry), server
    )
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (REGISTRY_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    creds = _credentials(config)
    if creds is None:
        port = server.add_insecure_port(config.listen)
    else:
        port = server.add_secure_port(config.listen, creds)
    if port == 0:
        raise OSError(f"cannot listen on {config.listen}")
    await _set_health(health_servicer, False)
    await server.start()
    running = Running(server, port, store, health_servicer, ready=ready)
    running.tasks.append(asyncio.create_task(_prepare_and_watch(config, store, tokens, running)))
    log.info(
        "listening",
        extra={"listen": config.listen, "port": port, "tls": creds is not None},
    )
    return running


async def serve(config: ServerConfig) -> None:
    """Run until SIGTERM or SIGINT, then drain in-flight RPCs."""
    running = await start(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down", extra={"grace_s": config.shutdown_grace})
    await running.stop(config.shutdown_grace)
    log.info("stopped")
