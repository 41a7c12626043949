"""CollectGarbage's request and response, converted (kept apart from the
transfer path of the artifact servicer)."""

from __future__ import annotations

from google.protobuf import duration_pb2
from modelregistry.v1 import artifact_service_pb2 as apb

from ..service.gc import GcReport


def grace_of(request: apb.CollectGarbageRequest) -> float | None:
    """The requested grace in seconds; None: the server's default."""
    if not request.HasField("grace"):
        return None
    return float(request.grace.ToTimedelta().total_seconds())


def report_to_pb(report: GcReport) -> apb.CollectGarbageResponse:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(int(report.duration_s * 1e9))
    return apb.CollectGarbageResponse(
        blobs_scanned=report.blobs_scanned,
        blobs_referenced=report.blobs_referenced,
        blobs_in_grace=report.blobs_in_grace,
        blobs_deleted=report.blobs_deleted,
        bytes_deleted=report.bytes_deleted,
        blobs_reclaimed_by_writers=report.blobs_kept_by_writers,
        dry_run=report.dry_run,
        duration=duration,
    )
