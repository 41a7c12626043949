"""Figures that are state, not events, read from the running server per scrape.

The watch hub, the read cache and the database pool belong to the event
loop, and the scrape arrives on the exporter's thread: iterating the hub's
watchers from there could meet a set changing size. So a scrape asks the
loop for one consistent snapshot (a few attribute reads, no I/O) and waits
for it briefly; a loop too busy to answer in time yields no live figures,
and /healthz says why.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector
from sqlalchemy.ext.asyncio import AsyncEngine

from ..blobs.base import BlobStore
from ..events.watch_hub import WatchHub
from ..service.read_cache import ReadCache
from . import metrics

log = logging.getLogger("modelreg.metrics")
# A loop that cannot run a few attribute reads in this long is wedged.
LOOP_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Sources:
    """The running server's objects whose state the metrics show."""

    health: HealthServicer
    hub: WatchHub
    cache: ReadCache
    engine: AsyncEngine
    blobs: BlobStore


@dataclass(frozen=True)
class Snapshot:
    serving: bool
    watch_streams: int
    watch_lag: int
    head: int
    cache_hits: int
    cache_misses: int
    pool_in_use: int
    pool_idle: int
    pool_max: int
    relay_revision: int | None


async def snapshot(sources: Sources) -> Snapshot:
    """Read on the event loop, with no await between the reads."""
    health = await sources.health.Check(health_pb2.HealthCheckRequest(service=""), None)
    pool = sources.engine.sync_engine.pool
    size = int(getattr(pool, "size", lambda: 0)())
    # QueuePool keeps its overflow limit private; make_engine sets it.
    overflow = max(0, int(getattr(pool, "_max_overflow", 0)))
    hub, cache = sources.hub, sources.cache
    return Snapshot(
        serving=health.status == health_pb2.HealthCheckResponse.SERVING,
        watch_streams=hub.watcher_count,
        watch_lag=hub.max_lag,
        head=hub.revision,
        cache_hits=cache.hits,
        cache_misses=cache.misses,
        pool_in_use=int(getattr(pool, "checkedout", lambda: 0)()),
        pool_idle=int(getattr(pool, "checkedin", lambda: 0)()),
        pool_max=size + overflow,
        relay_revision=metrics.RELAY.revision,
    )


def on_loop(loop: asyncio.AbstractEventLoop, sources: Sources) -> Snapshot | None:
    """A snapshot taken on `loop`, from another thread; None if it does not answer."""
    try:
        future = asyncio.run_coroutine_threadsafe(snapshot(sources), loop)
    except RuntimeError:  # the loop is closed: the server is gone
        return None
    try:
        return future.result(LOOP_TIMEOUT_S)
    except Exception:
        future.cancel()
        log.warning("the event loop did not answer a metrics snapshot in time")
        return None


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def families(snap: Snapshot) -> Iterator[Metric]:
    yield _gauge(
        "modelreg_serving", "1 while gRPC health reports SERVING, else 0", float(snap.serving)
    )
    yield _gauge("modelreg_watch_streams", "Watch streams open on this server", snap.watch_streams)
    yield _gauge(
        "modelreg_watch_lag_events",
        "Events the furthest-behind Watch stream has yet to be sent",
        snap.watch_lag,
    )
    yield _gauge(
        "modelreg_event_log_head_revision",
        "Newest event-log revision this server has read (it trails commits by "
        "at most the watch poll interval)",
        snap.head,
    )
    if snap.relay_revision is not None:
        yield _gauge(
            "modelreg_relay_lag_events",
            "Events in the log that the queue relay has not had acknowledged yet "
            "(only on the replica that publishes)",
            max(0, snap.head - snap.relay_revision),
        )
    yield CounterMetricFamily(
        "modelreg_read_cache_hits", "Reads answered from the read cache", value=snap.cache_hits
    )
    yield CounterMetricFamily(
        "modelreg_read_cache_misses",
        "Cacheable reads that went to the database",
        value=snap.cache_misses,
    )
    pool = GaugeMetricFamily(
        "modelreg_db_pool_connections", "Database connections held by the pool", labels=["state"]
    )
    pool.add_metric(["in_use"], snap.pool_in_use)
    pool.add_metric(["idle"], snap.pool_idle)
    yield pool
    yield _gauge(
        "modelreg_db_pool_max_connections",
        "Most connections the pool opens (pool size plus overflow)",
        snap.pool_max,
    )


class ServerCollector(Collector):
    """Everything in the default registry (process, RPC, transfer figures)
    plus this server's live figures: the registry the exporter serves."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sources: Sources) -> None:
        self._loop = loop
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
        snap = on_loop(self._loop, self._sources)
        if snap is not None:
            yield from families(snap)


async def sample_staging_forever(blobs: BlobStore, interval_s: float) -> None:
    """Staged uploads cost a listing of the blob store (S3: a request), so
    they are sampled on a timer, not per scrape."""
    failing = False
    while True:
        try:
            staged = await blobs.list_uploads()
        except Exception as exc:
            if not failing:
                log.warning("cannot list staged uploads", extra={"error": type(exc).__name__})
            failing = True
        else:
            failing = False
            metrics.UPLOAD_STAGING_BYTES.set(sum(info.offset for info in staged))
            metrics.UPLOADS_STAGED.set(len(staged))
        await asyncio.sleep(interval_s)
