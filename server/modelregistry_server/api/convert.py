"""Conversions between protobuf messages and domain values."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2
from modelregistry.v1 import resources_pb2 as pb
from modelregistry.v1.error_reasons import ErrorReason

from ..domain.errors import InvalidArgument
from ..domain.resources import (
    Alias,
    Approval,
    ApprovalState,
    Artifact,
    Model,
    ModelFields,
    ModelVersion,
    Rollout,
    RolloutState,
    VersionFields,
    VersionState,
)

_STATE_TO_PB = {
    VersionState.PENDING_UPLOAD: pb.ModelVersion.PENDING_UPLOAD,
    VersionState.READY: pb.ModelVersion.READY,
    VersionState.ARCHIVED: pb.ModelVersion.ARCHIVED,
}
_STATE_FROM_PB = {v: k for k, v in _STATE_TO_PB.items()}


# google.protobuf.Timestamp's own range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
_MIN_SECONDS = -62_135_596_800
_MAX_SECONDS = 253_402_300_799


def timestamp(us: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=us // 1_000_000, nanos=(us % 1_000_000) * 1000)


def timestamp_us(ts: timestamp_pb2.Timestamp, field: str) -> int:
    """Microseconds since the epoch; a value outside Timestamp's documented
    range (which also keeps it inside a 64-bit column) is INVALID_ARGUMENT."""
    if not _MIN_SECONDS <= ts.seconds <= _MAX_SECONDS or not 0 <= ts.nanos < 1_000_000_000:
        raise InvalidArgument(
            ErrorReason.INVALID_FIELD,
            f"{field}: seconds must be within years 1 to 9999 and nanos 0 to 999999999",
            field,
        )
    return ts.seconds * 1_000_000 + ts.nanos // 1000


def model_to_pb(m: Model) -> pb.Model:
    return pb.Model(
        name=str(m.name),
        uid=m.uid,
        display_name=m.display_name,
        description=m.description,
        labels=m.labels,
        create_time=timestamp(m.create_time_us),
        update_time=timestamp(m.update_time_us),
        etag=m.etag,
        latest_version=m.latest_version,
        protected_aliases=list(m.protected_aliases),
        separation_of_duties=m.separation_of_duties,
        storage_quota_bytes=m.storage_quota_bytes,
    )


def model_fields(m: pb.Model) -> ModelFields:
    return ModelFields(
        display_name=m.display_name,
        description=m.description,
        labels=dict(m.labels),
        protected_aliases=tuple(m.protected_aliases),
        separation_of_duties=m.separation_of_duties,
        storage_quota_bytes=m.storage_quota_bytes,
    )


def artifact_to_pb(a: Artifact | None) -> pb.Artifact | None:
    if a is None:
        return None
    return pb.Artifact(
        digest=a.digest,
        size_bytes=a.size_bytes,
        chunk_size_bytes=a.chunk_size_bytes,
        media_type=a.media_type,
    )


def version_to_pb(v: ModelVersion) -> pb.ModelVersion:
    metadata = struct_pb2.Struct()
    metadata.update(v.metadata)
    return pb.ModelVersion(
        name=str(v.name),
        uid=v.uid,
        version=v.name.version,
        state=_STATE_TO_PB[v.state],
        source_uri=v.source_uri,
        description=v.description,
        labels=v.labels,
        metadata=metadata,
        artifact=artifact_to_pb(v.artifact),
        create_time=timestamp(v.create_time_us),
        update_time=timestamp(v.update_time_us),
        etag=v.etag,
        approval=approval_to_pb(v.approval),
        creator=v.creator,
    )


def version_fields(v: pb.ModelVersion) -> VersionFields:
    metadata: dict[str, Any] = {}
    if v.HasField("metadata"):
        try:
            metadata = json_format.MessageToDict(v.metadata)
        except ValueError:  # NaN or Infinity, which JSON cannot carry
            raise InvalidArgument(
                ErrorReason.INVALID_FIELD,
                "model_version.metadata: NaN and Infinity not allowed",
                "model_version.metadata",
            ) from None
    return VersionFields(
        source_uri=v.source_uri,
        description=v.description,
        labels=dict(v.labels),
        metadata=metadata,
        state=_STATE_FROM_PB.get(v.state),
    )


def alias_to_pb(a: Alias) -> pb.Alias:
    return pb.Alias(
        name=str(a.name),
        version=str(a.version),
        create_time=timestamp(a.create_time_us),
        update_time=timestamp(a.update_time_us),
        etag=a.etag,
    )


_APPROVAL_TO_PB = {
    ApprovalState.PENDING: pb.Approval.PENDING,
    ApprovalState.APPROVED: pb.Approval.APPROVED,
    ApprovalState.REJECTED: pb.Approval.REJECTED,
}
_ROLLOUT_TO_PB = {
    RolloutState.ACTIVE: pb.Rollout.ACTIVE,
    RolloutState.PAUSED: pb.Rollout.PAUSED,
    RolloutState.COMPLETED: pb.Rollout.COMPLETED,
    RolloutState.ROLLED_BACK: pb.Rollout.ROLLED_BACK,
}


def approval_to_pb(a: Approval) -> pb.Approval:
    out = pb.Approval(state=_APPROVAL_TO_PB[a.state], actor=a.actor, comment=a.comment)
    if a.time_us:
        out.time.CopyFrom(timestamp(a.time_us))
    return out


def rollout_to_pb(r: Rollout) -> pb.Rollout:
    return pb.Rollout(
        name=str(r.name),
        alias=str(r.alias),
        stable_version=str(r.stable_version),
        candidate_version=str(r.candidate_version),
        steps=list(r.steps),
        percent=r.percent,
        state=_ROLLOUT_TO_PB[r.state],
        create_time=timestamp(r.create_time_us),
        update_time=timestamp(r.update_time_us),
        etag=r.etag,
    )
