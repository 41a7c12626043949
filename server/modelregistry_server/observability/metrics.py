"""What the server counts as it happens, in Prometheus' default registry.

These are process-wide (one server per process in production), so that the
code which moves a byte or publishes an event records it with one call and
needs no handle on the exporter. Figures that are state rather than events
live in `live.py` and are read at scrape time.

Names follow Prometheus' conventions: a `modelreg_` prefix, base units
(seconds, bytes), `_total` on counters. deploy/prometheus and deploy/grafana
query exactly these names, and a test keeps them in step.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from importlib import metadata

from prometheus_client import Counter, Gauge, Histogram, Info, disable_created_metrics

# Unary RPCs take well under a millisecond to seconds; streams (Watch,
# Upload, Download) last minutes to hours, hence the long tail.
RPC_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    1800.0,
)
# A commit reaches the hub at once through the commit hook (same replica) or
# NOTIFY (another replica), or at the next poll (1 s by default) if both fail.
DELIVERY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0)

RPC_LABELS = ("method", "type", "code")
# A `_created` series per counter doubles what is stored for no query we make.
disable_created_metrics()  # type: ignore[no-untyped-call]


def _version() -> str:
    try:
        return metadata.version("modelreg")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown"


BUILD = Info("modelreg_build", "The modelreg release this server runs")
BUILD.info({"version": _version()})

RPCS_HANDLED = Counter(
    "modelreg_rpc_handled",
    "RPCs completed, by full method name, RPC type and gRPC status code",
    RPC_LABELS,
)
RPC_DURATION = Histogram(
    "modelreg_rpc_duration_seconds",
    "Time from the start of an RPC to its status, by method, type and code",
    RPC_LABELS,
    buckets=RPC_BUCKETS,
)
RPCS_IN_FLIGHT = Gauge(
    "modelreg_rpc_in_flight", "RPCs started and not yet finished", ("method", "type")
)
TRANSFERS_IN_FLIGHT = Gauge(
    "modelreg_artifact_transfers_in_flight",
    "Upload and Download streams open now",
    ("direction",),
)
BYTES_UPLOADED = Counter(
    "modelreg_artifact_uploaded_bytes", "Artifact bytes received in upload chunks and staged"
)
BYTES_DOWNLOADED = Counter(
    "modelreg_artifact_downloaded_bytes", "Artifact bytes sent in download chunks"
)
WATCH_DELIVERY = Histogram(
    "modelreg_watch_delivery_seconds",
    "Time from an event's commit until this server's watch hub hands it to watchers",
    buckets=DELIVERY_BUCKETS,
)
UPLOAD_STAGING_BYTES = Gauge(
    "modelreg_upload_staging_bytes",
    "Bytes held in the blob store's staging area by unfinished uploads (sampled)",
)
UPLOADS_STAGED = Gauge(
    "modelreg_uploads_staged", "Unfinished uploads with staged bytes in the blob store (sampled)"
)


class _RelayPosition:
    """Where this process's queue relay stands; None while it does not publish
    (disabled, or standing by while another replica holds the lock)."""

    revision: int | None = None


RELAY = _RelayPosition()


def uploaded(nbytes: int) -> None:
    BYTES_UPLOADED.inc(nbytes)


def downloaded(nbytes: int) -> None:
    BYTES_DOWNLOADED.inc(nbytes)


def delivered(commit_times_us: Iterable[int]) -> None:
    """Events committed at these times (microseconds) reached the watch hub now."""
    now = time.time()
    for commit_us in commit_times_us:
        WATCH_DELIVERY.observe(max(0.0, now - commit_us / 1_000_000))


def relay_at(revision: int) -> None:
    """The relay leads and every event up to `revision` is acknowledged."""
    RELAY.revision = revision


def relay_standby() -> None:
    RELAY.revision = None
