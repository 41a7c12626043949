"""Revision-based consistency: which revision an answer reflects, and
read-your-writes across servers.

Every answer of a registry method carries metadata `modelreg-revision: N`
(trailing metadata on a unary answer, initial metadata on a stream): a read
reflects every event up to revision N (at least), a write's answer names a
revision at or after the write's own. Trailing on unary calls because
initial metadata sent on its own costs a write of its own per call (about
a fifth of a cached read's server time); trailers go out with the status. A
client may send request metadata `modelreg-min-revision: N` on any read;
the server then waits (at most `wait_s`) until it has applied revision N
and answers UNAVAILABLE / REVISION_NOT_APPLIED with its current revision
otherwise. With read replicas (`--read-database-url`) the floor also picks
the replica a read runs on (store/read_routing.py). A client that sends the
revision of its last write's answer to any server (a regional edge, a
replica) reads its own writes.

What "applied" means is the server's: on the primary, what its watch hub
has read (the read cache is invalidated by the same reads, so a cached
answer is never older than the revision it is sent with); on a regional
edge, what its follower has committed to the local read model.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from modelregistry.v1.error_reasons import ErrorMetadataKey, ErrorReason

from ..domain import errors, read_consistency
from ..domain.read_consistency import AppliedRevision as AppliedRevision
from . import error_map
from .access_rules import ACCESS, ARTIFACT, EVENT, REGISTRY, ROLLOUT
from .handler_wrapping import Behavior, WrappingInterceptor, rewrap

REQUEST_ID_KEY = "x-request-id"
MIN_REVISION_KEY = "modelreg-min-revision"
REVISION_KEY = "modelreg-revision"
MAX_REVISION = 2**63 - 1
DEFAULT_WAIT_S = 5.0

# The methods that read (the others write); both kinds carry the revision.
READS = frozenset(
    {
        REGISTRY + "GetModel",
        REGISTRY + "ListModels",
        REGISTRY + "GetModelVersion",
        REGISTRY + "ListModelVersions",
        REGISTRY + "GetAlias",
        REGISTRY + "ListAliases",
        REGISTRY + "ResolveAlias",
        ROLLOUT + "GetRollout",
        ROLLOUT + "ListRollouts",
        EVENT + "ListEvents",
        EVENT + "Watch",
        ARTIFACT + "Download",
        ARTIFACT + "GetBlob",
        ACCESS + "GetIamPolicy",
        ACCESS + "TestIamPermissions",
        ACCESS + "ListServiceAccountTokens",
    }
)
_COVERED = (REGISTRY, ROLLOUT, EVENT, ARTIFACT, ACCESS)


def parse_min_revision(metadata: Any) -> int:
    """The `modelreg-min-revision` of request metadata; 0 when absent."""
    for key, value in metadata or ():
        if key != MIN_REVISION_KEY:
            continue
        text = value.decode() if isinstance(value, bytes) else str(value)
        if not text.isascii() or not text.isdigit() or len(text) > 19 or int(text) > MAX_REVISION:
            raise errors.InvalidArgument(
                ErrorReason.INVALID_MIN_REVISION,
                f"metadata {MIN_REVISION_KEY}: not a decimal revision",
                MIN_REVISION_KEY,
            )
        return int(text)
    return 0


def not_applied(asked: int, applied: int) -> errors.Unavailable:
    return errors.Unavailable(
        ErrorReason.REVISION_NOT_APPLIED,
        f"revision {asked} is not applied here yet (applied: {applied}); retry or read "
        "from the primary",
        {ErrorMetadataKey.MIN_REVISION: str(asked), ErrorMetadataKey.HEAD_REVISION: str(applied)},
    )


class RevisionWaitInterceptor(WrappingInterceptor):
    """Waits for `modelreg-min-revision` before a read. It runs first, before
    authentication and authorization, so that a read asking for a revision
    is also checked against the policies as of that revision; it maps its
    own errors (the request interceptor has not run yet)."""

    def __init__(self, applied: AppliedRevision, wait_s: float = DEFAULT_WAIT_S) -> None:
        super().__init__()
        self._applied = applied
        self._wait_s = wait_s

    async def _wait(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        try:
            asked = parse_min_revision(context.invocation_metadata())
            if asked and not await self._applied.wait_for(asked, self._wait_s):
                raise not_applied(asked, self._applied.revision)
        except errors.DomainError as exc:
            rid = uuid.uuid4().hex
            for key, value in context.invocation_metadata() or ():
                if key == REQUEST_ID_KEY and isinstance(value, str) and len(value) <= 128:
                    rid = value
            code, message, trailers = error_map.from_domain(exc, rid)
            await context.abort(code, message, (*trailers, (REQUEST_ID_KEY, rid)))

    def wrap(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        if method not in READS:
            return handler

        def unary(behavior: Behavior, _rpc_type: str) -> Behavior:
            async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                await self._wait(context)
                return await behavior(request, context)

            return wrapper

        def stream(behavior: Behavior, _rpc_type: str) -> Behavior:
            async def wrapper(
                request: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                await self._wait(context)
                async for response in behavior(request, context):
                    yield response

            return wrapper

        return rewrap(handler, unary, stream)


class ConsistencyInterceptor(WrappingInterceptor):
    """Sends `modelreg-revision` with every answer (reads have waited for
    `modelreg-min-revision` in RevisionWaitInterceptor by then).
    `write_revision` (if given) says, after a write, a revision at or after
    it (the log's head); without it a write's answer carries the applied
    revision."""

    def __init__(
        self,
        applied: AppliedRevision,
        wait_s: float = DEFAULT_WAIT_S,
        write_revision: Callable[[], Awaitable[int]] | None = None,
    ) -> None:
        super().__init__()
        self._applied = applied
        self._wait_s = wait_s
        self._write_revision = write_revision

    async def _before_read(self, context: grpc.aio.ServicerContext[Any, Any]) -> int:
        return self._applied.revision

    async def _after_write(self) -> int:
        if self._write_revision is None:
            return self._applied.revision
        return max(await self._write_revision(), self._applied.revision)

    def wrap(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        if not method.startswith(_COVERED):
            return handler
        read = method in READS

        def unary(behavior: Behavior, _rpc_type: str) -> Behavior:
            async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                # The floor was checked (and waited for) by RevisionWaitInterceptor.
                floor = parse_min_revision(context.invocation_metadata()) if read else 0
                revision = await self._before_read(context) if read else 0
                # The store notes what the call saw (the replica a read ran
                # on, the revision a write appended): see store/read_routing.py.
                record, token = read_consistency.begin(floor)
                try:
                    response = await behavior(request, context)
                finally:
                    read_consistency.end(token)
                if not read:
                    revision = record.revision or await self._after_write()
                revision = max(revision, record.revision)
                # Added to what other layers set (the request id), not in place of it.
                trailers = tuple(context.trailing_metadata() or ())
                context.set_trailing_metadata((*trailers, (REVISION_KEY, str(revision))))
                return response

            return wrapper

        async def stream_revision(context: grpc.aio.ServicerContext[Any, Any]) -> None:
            revision = await self._before_read(context) if read else self._applied.revision
            await context.send_initial_metadata(((REVISION_KEY, str(revision)),))

        def stream(behavior: Behavior, _rpc_type: str) -> Behavior:
            async def wrapper(
                request: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                await stream_revision(context)
                async for response in behavior(request, context):
                    yield response

            return wrapper

        def writer(behavior: Behavior, _rpc_type: str) -> Behavior:
            async def wrapper(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                await stream_revision(context)
                return await behavior(request, context)

            return wrapper

        return rewrap(handler, unary, stream, writer_response=writer)
