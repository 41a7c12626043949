"""The connection every part of the SDK works through: one channel, its
stubs, the call metadata and the retry rule.

`RegistryClient` and the artifact transfers (`push`, `pull`) both depend on
this and not on each other. The channel is opened on first use: an aio
channel belongs to the event loop running when it is made, which need not
exist yet when a client is built.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import grpc
from google.protobuf.message import Message

from .errors import REQUEST_ID_KEY, from_rpc_error
from .transport import RetryPolicy, open_channel
from .v1 import (
    access_service_pb2_grpc,
    artifact_service_pb2_grpc,
    event_service_pb2_grpc,
    registry_service_pb2_grpc,
    rollout_service_pb2_grpc,
    signature_service_pb2_grpc,
)
from .v1.error_reasons import ErrorMetadataKey, ErrorReason

if TYPE_CHECKING:
    from .v1.access_service_pb2_grpc import AccessServiceAsyncStub
    from .v1.artifact_service_pb2_grpc import ArtifactServiceAsyncStub
    from .v1.event_service_pb2_grpc import EventServiceAsyncStub
    from .v1.registry_service_pb2_grpc import RegistryServiceAsyncStub
    from .v1.rollout_service_pb2_grpc import RolloutServiceAsyncStub
    from .v1.signature_service_pb2_grpc import SignatureServiceAsyncStub

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)
M = TypeVar("M")

# Request metadata: the revision a read must reflect at least; answer
# metadata: the revision an answer reflects (see the README, "Regional edges").
MIN_REVISION_KEY = "modelreg-min-revision"
REVISION_KEY = "modelreg-revision"

# With several addresses, how long a client stays on a farther one before
# trying the nearest again.
PREFER_NEAREST_AFTER_S = 30.0

# A bare channel does not say where it leads; its uploads' resume state is
# kept under this name instead of a server address.
UNNAMED_TARGET = "channel"


def call_metadata(request_id: str | None) -> grpc.aio.Metadata | None:
    """What every call sends besides its request: the caller's request id, if any."""
    return grpc.aio.Metadata((REQUEST_ID_KEY, request_id)) if request_id else None


@dataclass(frozen=True)
class Stubs:
    """One stub per service, all on the same channel."""

    registry: RegistryServiceAsyncStub
    artifacts: ArtifactServiceAsyncStub
    events: EventServiceAsyncStub
    rollouts: RolloutServiceAsyncStub
    access: AccessServiceAsyncStub
    signatures: SignatureServiceAsyncStub

    @classmethod
    def on(cls, channel: grpc.aio.Channel) -> Stubs:
        return cls(
            registry_service_pb2_grpc.RegistryServiceStub(channel),
            artifact_service_pb2_grpc.ArtifactServiceStub(channel),
            event_service_pb2_grpc.EventServiceStub(channel),
            rollout_service_pb2_grpc.RolloutServiceStub(channel),
            access_service_pb2_grpc.AccessServiceStub(channel),
            signature_service_pb2_grpc.SignatureServiceStub(channel),
        )


class Core:
    """A connection to one registry server.

    `timeout` applies to each attempt of each unary call (None: no
    deadline). `call` retries reads on UNAVAILABLE as `retry` says, never
    writes.
    """

    def __init__(
        self,
        target: str | Sequence[str],
        *,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = (),
        timeout: float | None = 10.0,
        retry: RetryPolicy | None = None,
        interceptors: Sequence[Any] = (),
    ) -> None:
        """`target`: one address, or several, nearest first (a regional edge,
        then the primary): reads that find one unavailable go on to the
        next, and the nearest is tried again after `PREFER_NEAREST_AFTER_S`.
        `interceptors`: channel interceptors, e.g. the one that sends a
        bearer token (see credentials.py)."""
        self.targets = (target,) if isinstance(target, str) else tuple(target)
        if not self.targets:
            raise ValueError("no server address given")
        self._index = 0
        self._back_to_nearest_at = 0.0
        self._retired: list[grpc.aio.Channel] = []
        self._write_open: tuple[str, grpc.aio.Channel, Stubs] | None = None
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._credentials = credentials
        self._options = tuple(options)
        self._interceptors = tuple(interceptors)
        self._open: tuple[grpc.aio.Channel, Stubs] | None = None
        self._owns_channel = True
        # Revisions (see `min_revision_for_reads`).
        self.last_revision = 0
        self.last_write_revision = 0
        self.min_revision = 0
        self.read_your_writes = False

    @classmethod
    def over(cls, channel: grpc.aio.Channel, timeout: float | None = 10.0) -> Core:
        """A core on a channel the caller opened (and closes)."""
        core = cls(UNNAMED_TARGET, timeout=timeout)
        core._open = (channel, Stubs.on(channel))
        core._owns_channel = False
        return core

    @property
    def target(self) -> str:
        """The address calls go to now."""
        return self.targets[self._index]

    def failover(self) -> None:
        """The current address is unavailable: use the next one from now on
        (calls in flight on the old channel finish or fail on their own)."""
        if len(self.targets) < 2 or not self._owns_channel:
            return
        self._index = (self._index + 1) % len(self.targets)
        self._back_to_nearest_at = time.monotonic() + PREFER_NEAREST_AFTER_S
        if self._open is not None:
            self._retired.append(self._open[0])
            self._open = None

    def _opened(self) -> tuple[grpc.aio.Channel, Stubs]:
        if self._index and time.monotonic() >= self._back_to_nearest_at:
            self._index = self._back_to_nearest_at = 0
            if self._open is not None:
                self._retired.append(self._open[0])
                self._open = None
        if self._open is None:
            channel = open_channel(
                self.target, self._credentials, self._options, self._interceptors
            )
            self._open = (channel, Stubs.on(channel))
        return self._open

    def channel(self) -> grpc.aio.Channel:
        """The channel (opened on first use)."""
        return self._opened()[0]

    @property
    def stubs(self) -> Stubs:
        return self._opened()[1]

    async def close(self) -> None:
        """Closes the channel this core opened (calls in flight are cancelled);
        a later call opens a new one. A caller's channel is left to the caller."""
        if not self._owns_channel:
            return
        opened, self._open = self._open, None
        if opened is not None:
            await opened[0].close(None)
        if self._write_open is not None:
            self._retired.append(self._write_open[1])
            self._write_open = None
        retired, self._retired = self._retired, []
        for channel in retired:
            await channel.close(None)

    async def call(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[Req, Resp],
        request: Req,
        request_id: str | None,
        *,
        read: bool,
    ) -> Resp:
        """One unary call; failures raise `RegistryError` subclasses."""
        metadata = call_metadata(request_id)
        floor = self.min_revision_for_reads() if read else 0
        if floor:
            metadata = metadata or grpc.aio.Metadata()
            metadata.add(MIN_REVISION_KEY, str(floor))
        attempts = self.retry.max_attempts if read else 1
        attempt = 1
        while True:
            try:
                call = method(request, timeout=self.timeout, metadata=metadata)
                response = await call
                # Unary answers carry it in trailers; older servers sent it
                # as initial metadata.
                self._note_revision(await call.trailing_metadata(), read)
                self._note_revision(await call.initial_metadata(), read)
                return response
            except grpc.aio.AioRpcError as err:
                redirect = None if read else self._primary_of(err)
                if redirect is not None and attempt == 1:
                    # A regional edge refused the write before doing
                    # anything: send it to the primary, once.
                    method = _same_method(method, self.stubs, self._writer(redirect))
                    attempt += 1
                    continue
                if err.code() != grpc.StatusCode.UNAVAILABLE or attempt >= attempts:
                    raise from_rpc_error(err) from err
                before = self._open[1] if self._open is not None else None
                self.failover()
                if before is not None:
                    method = _same_method(method, before, self.stubs)
            await asyncio.sleep(self.retry.backoff(attempt))
            attempt += 1

    def _primary_of(self, err: grpc.aio.AioRpcError) -> str | None:
        """The primary named by an edge's READ_ONLY_EDGE refusal, if it is
        one of this client's own addresses (credentials never go to an
        address only a server named)."""
        if err.code() != grpc.StatusCode.FAILED_PRECONDITION:
            return None
        error = from_rpc_error(err)
        primary = error.metadata.get(ErrorMetadataKey.PRIMARY.value, "")
        if error.reason != ErrorReason.READ_ONLY_EDGE.name or primary not in self.targets:
            return None
        return primary

    def _writer(self, target: str) -> Stubs:
        """Stubs on a channel to `target`, for writes an edge redirected."""
        if self._write_open is None or self._write_open[0] != target:
            if self._write_open is not None:
                self._retired.append(self._write_open[1])
            channel = open_channel(target, self._credentials, self._options, self._interceptors)
            self._write_open = (target, channel, Stubs.on(channel))
        return self._write_open[2]

    def min_revision_for_reads(self) -> int:
        """What reads send as `modelreg-min-revision`: `min_revision` (set it
        to a revision read elsewhere), and with `read_your_writes` the
        revision of this client's last write, so a read from a regional edge
        or a replica never misses a write this client made."""
        mine = self.last_write_revision if self.read_your_writes else 0
        return max(self.min_revision, mine)

    def _note_revision(self, metadata: Any, read: bool) -> None:
        for key, value in metadata or ():
            if key == REVISION_KEY and str(value).isdigit():
                self.last_revision = int(value)
                if not read:
                    self.last_write_revision = max(self.last_write_revision, int(value))


def _same_method(method: M, before: Stubs, after: Stubs) -> M:
    """The method `method` of `before`'s stubs, on `after`'s channel."""
    for service in dataclasses.fields(Stubs):
        old, new = getattr(before, service.name), getattr(after, service.name)
        for name, value in vars(old).items():
            if value is method:
                return getattr(new, name)  # type: ignore[no-any-return]
    return method


class HasCore(Protocol):
    """Anything built on a core, such as `RegistryClient`."""

    @property
    def core(self) -> Core: ...


Connection = HasCore | Core | grpc.aio.Channel
"""What the artifact functions accept: a client, a core or a bare channel."""


def core_of(conn: Connection) -> Core:
    if isinstance(conn, Core):
        return conn
    if isinstance(conn, grpc.aio.Channel):
        return Core.over(conn)
    return conn.core
