"""Warming ahead of need: an edge fetches a version's artifact when a
rollout of it starts (or when it is approved, with `--warm-on approval`),
before any serving instance asks, and reports it warm to the primary.

The trigger is the primary's log as the follower applies it, so every edge
starts warming within moments of the commit. A version is warm once every
blob of its artifact (the manifest and each file it lists) is stored and
verified here; only then is it reported. Reports are retried until the
primary takes them, and a heartbeat keeps the region live on the primary
(see warm_states.py). After a restart the edge warms again the candidates
of every running rollout it knows; blobs it already holds cost nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from contextlib import aclosing

import grpc
from modelregistry.v1 import edge_service_pb2, edge_service_pb2_grpc

from ..domain import errors
from ..domain.events import Event
from ..domain.manifest import MEDIA_TYPE, parse_manifest
from ..domain.names import VersionName, parse_version_name
from ..store.sqlalchemy_store import SqlRegistryStore
from .pull_through import PullThroughBlobs
from .read_model_sql import SqlReadModel

log = logging.getLogger("modelreg.edge")
HEARTBEAT_S = 30.0
MAX_BACKOFF_S = 5.0
# Files of one manifest fetched at the same time.
PARALLEL_FILES = 4


class Warmer:
    def __init__(
        self,
        region: str,
        warm_on: str,
        blobs: PullThroughBlobs,
        store: SqlRegistryStore,
        read_model: SqlReadModel,
        channel: grpc.aio.Channel,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self._region = region
        self._warm_on = warm_on
        self._blobs = blobs
        self._store = store
        self._read_model = read_model
        self._edge = edge_service_pb2_grpc.EdgeServiceStub(channel)
        self._metadata = metadata
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # Versions warm here (reported or about to be).
        self.warm: set[str] = set()

    def offer(self, batch: Sequence[Event]) -> None:
        """Events the follower has just applied: start warming what they ask for."""
        if self._warm_on == "none":
            return
        for event in batch:
            if event.type == "ROLLOUT_STARTED" and event.after_json:
                self.schedule(json.loads(event.after_json)["candidate_version"])
            elif event.type == "VERSION_APPROVED" and self._warm_on == "approval":
                self.schedule(event.resource)

    def schedule(self, version: str) -> None:
        if version in self.warm or version in self._tasks:
            return
        task = asyncio.create_task(self._warm_and_report(version), name=f"warm {version}")
        self._tasks[version] = task
        task.add_done_callback(lambda _t: self._tasks.pop(version, None))

    def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()

    async def run(self) -> None:
        """Warm the candidates of running rollouts (after a restart), then
        send a heartbeat forever."""
        if self._warm_on != "none":
            for version in await self._read_model.running_candidates():
                self.schedule(version)
        while True:
            await self._report([])
            await asyncio.sleep(HEARTBEAT_S)

    async def _warm_and_report(self, version: str) -> None:
        delay = 0.2
        while True:
            try:
                if await self._warm(parse_version_name(version)):
                    self.warm.add(version)
                    await self._report([version])
                return
            except errors.NotFound:
                return  # deleted meanwhile: nothing to warm
            except errors.DomainError as exc:
                log.warning(
                    "edge could not warm a version yet; retrying",
                    extra={"version": version, "reason": exc.reason.name},
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)

    async def _warm(self, name: VersionName) -> bool:
        """Whether every blob of the version is here and verified (False:
        it has no managed artifact, or the primary does not have it)."""
        version = await self._store.get_version(name)
        if version.artifact is None:
            return False
        if await self._blobs.ensure(version.artifact.digest) is None:
            return False
        if version.artifact.media_type != MEDIA_TYPE:
            return True
        async with aclosing(self._blobs.open_reader(version.artifact.digest)) as reader:
            manifest = parse_manifest(b"".join([chunk async for chunk in reader]))
        digests = sorted({f.digest for f in manifest.files})
        limit = asyncio.Semaphore(PARALLEL_FILES)

        async def one(digest: str) -> bool:
            async with limit:
                return await self._blobs.ensure(digest) is not None

        return all(await asyncio.gather(*(one(d) for d in digests)))

    async def _report(self, versions: list[str]) -> None:
        """Tell the primary, retrying until it listens."""
        delay = 0.2
        request = edge_service_pb2.ReportWarmStateRequest(
            region=self._region, warm_versions=versions
        )
        while True:
            try:
                await self._edge.ReportWarmState(request, metadata=self._metadata, timeout=10)
                return
            except grpc.aio.AioRpcError as exc:
                if exc.code() in (
                    grpc.StatusCode.INVALID_ARGUMENT,
                    grpc.StatusCode.PERMISSION_DENIED,
                ):
                    log.error(
                        "the primary refuses this edge's reports",
                        extra={"code": exc.code().name},
                    )
                    return
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)
