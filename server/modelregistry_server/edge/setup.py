"""A server as a regional edge (`--upstream`): the channel to the primary,
the follower, and the guard that keeps writes off the edge.

Writes are refused (FAILED_PRECONDITION, READ_ONLY_EDGE, naming the
primary) rather than proxied: a write must reach the primary anyway, and a
proxy would add a hop, hold the caller's credentials in one more process,
and leave the caller unsure whether a write that timed out on the way
committed. The refusal is immediate and tells the client where to go; the
SDK and the serving agent send writes to the primary themselves.

Access on the edge: callers are authenticated by the edge itself with the
same configuration as the primary (`--auth`, the JWKS, the trusted client
CA), and authorized against the edge's copy of the IAM policies, which
arrive with the replicated state. Service-account tokens are not
replicated (the log never carries their secrets' hashes), so at an edge a
caller authenticates with a JWT or a client certificate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from modelregistry.v1.error_reasons import ErrorMetadataKey, ErrorReason

from ..api.access_rules import ACCESS, ARTIFACT, EVENT, REGISTRY, ROLLOUT
from ..api.consistency import READS, AppliedRevision
from ..api.handler_wrapping import Behavior, WrappingInterceptor, rewrap
from ..blobs.base import BlobStore
from ..config import MAX_MESSAGE_BYTES, ServerConfig
from ..domain import errors
from ..store.sqlalchemy_store import SqlRegistryStore
from .follower import Follower
from .pull_through import PullThroughBlobs
from .read_model_sql import SqlReadModel
from .warmer import Warmer

_COVERED = (REGISTRY, ROLLOUT, EVENT, ARTIFACT, ACCESS)
# Writes an edge serves itself (see edge/warm.py): none of the primary's.
EDGE_METHODS: frozenset[str] = frozenset()


def read_only(primary: str, region: str) -> errors.FailedPrecondition:
    return errors.FailedPrecondition(
        ErrorReason.READ_ONLY_EDGE,
        f"this is the read-only edge of region {region or '(unnamed)'}; send writes to the "
        f"primary at {primary}",
        {ErrorMetadataKey.PRIMARY: primary, ErrorMetadataKey.REGION: region},
    )


def not_synced() -> errors.Unavailable:
    return errors.Unavailable(
        ErrorReason.NOT_READY,
        "the edge has not caught up with the primary yet; retry shortly",
    )


class EdgeGuard(WrappingInterceptor):
    """Refuses writes, and reads until the follower has caught up once."""

    def __init__(self, primary: str, region: str, synced: Callable[[], bool]) -> None:
        super().__init__()
        self._primary = primary
        self._region = region
        self._synced = synced

    def wrap(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        if not method.startswith(_COVERED) or method in EDGE_METHODS:
            return handler
        read = method in READS

        def check() -> None:
            if not read:
                raise read_only(self._primary, self._region)
            if not self._synced():
                raise not_synced()

        def unary(behavior: Behavior, _rpc_type: str) -> Behavior:
            async def wrapper(request: Any, context: Any) -> Any:
                check()
                return await behavior(request, context)

            return wrapper

        def stream(behavior: Behavior, _rpc_type: str) -> Behavior:
            async def wrapper(request: Any, context: Any) -> Any:
                check()
                async for response in behavior(request, context):
                    yield response

            return wrapper

        return rewrap(handler, unary, stream)


def upstream_channel(config: ServerConfig) -> grpc.aio.Channel:
    options = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", 10_000),
        ("grpc.keepalive_timeout_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 1),
    ]
    if config.upstream_tls_ca is None:
        if config.upstream_tls_cert or config.upstream_tls_key:
            raise ValueError("--upstream-tls-cert and --upstream-tls-key need --upstream-tls-ca")
        return grpc.aio.insecure_channel(config.upstream, options=options)
    key = config.upstream_tls_key.read_bytes() if config.upstream_tls_key else None
    cert = config.upstream_tls_cert.read_bytes() if config.upstream_tls_cert else None
    creds = grpc.ssl_channel_credentials(config.upstream_tls_ca.read_bytes(), key, cert)
    return grpc.aio.secure_channel(config.upstream, creds, options=options)


def upstream_metadata(config: ServerConfig) -> tuple[tuple[str, str], ...]:
    if config.upstream_token_file is None:
        return ()
    token = config.upstream_token_file.read_text().strip()
    return (("authorization", f"Bearer {token}"),)


@dataclass
class EdgeParts:
    """What makes a server an edge."""

    config: ServerConfig
    channel: grpc.aio.Channel
    metadata: tuple[tuple[str, str], ...]
    follower: Follower
    guard: EdgeGuard
    blobs: PullThroughBlobs
    warmer: Warmer

    async def close(self) -> None:
        self.warmer.close()
        await self.channel.close(None)


def build(
    config: ServerConfig,
    read_model: SqlReadModel,
    store: SqlRegistryStore,
    local_blobs: BlobStore,
    applied: AppliedRevision,
    on_snapshot: Callable[[], None],
) -> EdgeParts:
    """`store` reads the local read model as the registry does; `local_blobs`
    is the edge's own blob store."""
    if not config.region:
        raise ValueError("--upstream needs --region")
    channel = upstream_channel(config)
    metadata = upstream_metadata(config)
    blobs = PullThroughBlobs(local_blobs, channel, metadata)
    warmer = Warmer(config.region, config.warm_on, blobs, store, read_model, channel, metadata)
    follower = Follower(channel, read_model, applied, metadata, on_snapshot, warmer.offer)
    guard = EdgeGuard(config.upstream, config.region, follower.state.synced.is_set)
    return EdgeParts(config, channel, metadata, follower, guard, blobs, warmer)
