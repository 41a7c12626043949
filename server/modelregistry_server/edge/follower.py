"""The edge's follower: the primary's event log, applied to the local read
model as it commits.

One Watch stream on the primary, resumed from the last applied revision + 1
(the local log's head, so a restart resumes where it stopped). Each message
is applied in one local transaction, then announced (applied revision,
watch hub, read cache). A stream that breaks (primary restarted, network
cut) is opened again with backoff; nothing is lost, since the position is
only moved by what was committed locally.

The edge re-snapshots (see snapshot.py) instead of serving stale state
when the log cannot bring it up to date: the primary answers
OUT_OF_RANGE (compacted past the edge's position), or the first event's
`prev_hash` is not the local head's hash (another history). A snapshot is
taken on a Watch opened "from now": its first message says where now is,
the List RPCs then read the rows, and the same stream goes on from there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from modelregistry.v1 import (
    access_service_pb2_grpc,
    event_service_pb2,
    event_service_pb2_grpc,
    registry_service_pb2_grpc,
    resources_pb2,
    rollout_service_pb2_grpc,
)

from ..api.consistency import AppliedRevision
from ..domain import errors
from ..domain.events import Event
from . import snapshot
from .read_model_sql import SqlReadModel

log = logging.getLogger("modelreg.edge")
MAX_BACKOFF_S = 5.0


class _Resnapshot(Exception):
    """The local state cannot be continued from the primary's log."""


def to_event(e: resources_pb2.Event) -> Event:
    return Event(
        revision=e.revision,
        type=e.type,
        resource=e.resource,
        model=e.model,
        actor=e.actor,
        time_us=e.time.seconds * 1_000_000 + e.time.nanos // 1000,
        before_json=e.before_json,
        after_json=e.after_json,
        prev_hash=e.prev_hash,
        hash=e.hash,
    )


@dataclass
class FollowerState:
    """What operators and the rest of the edge can see of the follower."""

    synced: asyncio.Event
    connected: bool = False
    snapshots: int = 0
    last_error: str = ""


class Follower:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        read_model: SqlReadModel,
        applied: AppliedRevision,
        metadata: snapshot.Metadata = (),
        on_snapshot: Callable[[], None] = lambda: None,
        on_events: Callable[[Sequence[Event]], None] = lambda _batch: None,
    ) -> None:
        self._events = event_service_pb2_grpc.EventServiceStub(channel)
        self._registry = registry_service_pb2_grpc.RegistryServiceStub(channel)
        self._rollouts = rollout_service_pb2_grpc.RolloutServiceStub(channel)
        self._access = access_service_pb2_grpc.AccessServiceStub(channel)
        self._model = read_model
        self._applied = applied
        self._metadata = metadata
        self._on_snapshot = on_snapshot
        self._listeners = [on_events]
        self.state = FollowerState(asyncio.Event())

    def add_listener(self, listener: Callable[[Sequence[Event]], None]) -> None:
        """Also hand every applied batch to `listener`, before the batch's
        revision counts as applied (so a read that waited for it sees
        everything the listener did, e.g. dropped cached access decisions)."""
        self._listeners.append(listener)

    async def run(self) -> None:
        """Follow forever; run it as a task once the local schema is ready.
        A fresh edge replays the whole log when the primary still has it
        (its watch and event listing then serve the full history), and
        snapshots when it does not."""
        revision, _ = await self._model.position()
        self._applied.advance(revision)
        if revision > 0:  # what the edge has, it serves through an outage of the primary
            self.state.synced.set()
        delay = 0.1
        fresh = False
        while True:
            try:
                if fresh:
                    await self._snapshot_and_follow()
                else:
                    await self._follow()
            except _Resnapshot as exc:
                log.warning("edge re-snapshots from the primary", extra={"why": str(exc)})
                fresh = True
                continue
            except grpc.aio.AioRpcError as exc:
                self.state.connected = False
                self.state.last_error = f"{exc.code().name}: {exc.details()}"
                if exc.code() == grpc.StatusCode.OUT_OF_RANGE:
                    log.warning("the primary compacted past the edge's position; re-snapshot")
                    fresh = True
                    continue
                log.warning("edge lost the primary", extra={"error": self.state.last_error})
            except errors.Unavailable:  # the local database; the position is intact
                log.warning("edge cannot write its read model; retrying")
            except Exception:
                # A bug, or an event this edge cannot apply: a loud retry from
                # a fresh snapshot beats serving stale state quietly.
                log.exception("edge failed to apply the primary's log; re-snapshot")
                fresh = True
            else:
                fresh, delay = False, 0.1
                continue
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)

    async def _stream(self, start: int) -> grpc.aio.UnaryStreamCall[object, object]:
        request = event_service_pb2.WatchRequest(start_revision=start)
        return self._events.Watch(request, metadata=self._metadata)  # type: ignore[return-value]

    async def _follow(self) -> None:
        revision, head_hash = await self._model.position()
        call = await self._stream(revision + 1)
        await self._consume(call, head_hash)

    async def _snapshot_and_follow(self) -> None:
        call = await self._stream(0)
        try:
            first: Any = await call.read()
            if first is grpc.aio.EOF:  # type: ignore[attr-defined]
                raise _lost("the primary ended the stream")
            now = int(first.revision)
            snap = await snapshot.take(
                self._registry, self._rollouts, self._access, now, self._metadata
            )
        except BaseException:
            call.cancel()
            raise
        await self._model.replace(snap)
        self.state.snapshots += 1
        self._on_snapshot()
        self._applied.advance(now)
        self.state.synced.set()
        log.info(
            "edge snapshot applied",
            extra={"revision": now, "models": len(snap.models), "versions": len(snap.versions)},
        )
        await self._consume(call, "")

    async def _consume(self, call: object, head_hash: str) -> None:
        try:
            await self._apply_stream(call, head_hash)
        finally:
            call.cancel()  # type: ignore[attr-defined]

    async def _apply_stream(self, call: object, head_hash: str) -> None:
        self.state.connected = True
        while True:
            message: Any = await call.read()  # type: ignore[attr-defined]
            if message is grpc.aio.EOF:  # type: ignore[attr-defined]
                break
            batch = [to_event(e) for e in message.events]
            if batch:
                if head_hash and batch[0].prev_hash != head_hash:
                    raise _Resnapshot(f"history differs at revision {batch[0].revision}")
                await self._model.apply(batch)
                for listener in self._listeners:
                    listener(batch)
                head_hash = batch[-1].hash
            self._applied.advance(int(message.revision))
            self.state.synced.set()
        raise _lost("the primary ended the stream")


def _lost(why: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), why, None
    )
