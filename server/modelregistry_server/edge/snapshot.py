"""A snapshot of the primary through its List RPCs, as plain values.

Used when the log cannot bring an edge up to date: a fresh edge whose
primary has compacted its log, or an edge that fell behind the compaction
(REVISION_COMPACTED) or finds the primary's history different from its own
(a broken hash chain, e.g. a primary restored from a backup).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from modelregistry.v1 import (
    access_service_pb2,
    access_service_pb2_grpc,
    registry_service_pb2,
    registry_service_pb2_grpc,
    resources_pb2,
    rollout_service_pb2,
    rollout_service_pb2_grpc,
)

from .read_model_sql import Plain, Snapshot

PAGE = 1000
Metadata = tuple[tuple[str, str], ...]


def _us(ts: Timestamp) -> int:
    return ts.seconds * 1_000_000 + ts.nanos // 1000


def _enum(message: Any, field: str) -> str:
    value = getattr(message, field)
    return str(message.DESCRIPTOR.fields_by_name[field].enum_type.values_by_number[value].name)


def model_plain(m: resources_pb2.Model) -> Plain:
    return {
        "name": m.name,
        "uid": m.uid,
        "display_name": m.display_name,
        "description": m.description,
        "labels": dict(m.labels),
        "create_time_us": _us(m.create_time),
        "update_time_us": _us(m.update_time),
        "etag": m.etag,
        "latest_version": m.latest_version,
        "protected_aliases": list(m.protected_aliases),
        "separation_of_duties": m.separation_of_duties,
    }


def version_plain(v: resources_pb2.ModelVersion) -> Plain:
    artifact = None
    if v.HasField("artifact") and v.artifact.digest:
        artifact = {
            "digest": v.artifact.digest,
            "size_bytes": v.artifact.size_bytes,
            "chunk_size_bytes": v.artifact.chunk_size_bytes,
            "media_type": v.artifact.media_type,
        }
    approval = {
        "state": _enum(v.approval, "state") if v.approval.state else "PENDING",
        "actor": v.approval.actor,
        "comment": v.approval.comment,
        "time_us": _us(v.approval.time),
    }
    return {
        "name": v.name,
        "uid": v.uid,
        "state": _enum(v, "state"),
        "source_uri": v.source_uri,
        "description": v.description,
        "labels": dict(v.labels),
        "metadata": json_format.MessageToDict(v.metadata),
        "artifact": artifact,
        "create_time_us": _us(v.create_time),
        "update_time_us": _us(v.update_time),
        "etag": v.etag,
        "approval": approval,
        "creator": v.creator,
    }


def alias_plain(a: resources_pb2.Alias) -> Plain:
    return {
        "name": a.name,
        "version": a.version,
        "create_time_us": _us(a.create_time),
        "update_time_us": _us(a.update_time),
        "etag": a.etag,
    }


def rollout_plain(r: resources_pb2.Rollout) -> Plain:
    return {
        "name": r.name,
        "alias": r.alias,
        "stable_version": r.stable_version,
        "candidate_version": r.candidate_version,
        "steps": list(r.steps),
        "percent": r.percent,
        "state": _enum(r, "state"),
        "create_time_us": _us(r.create_time),
        "update_time_us": _us(r.update_time),
        "etag": r.etag,
    }


async def _pages(fetch: Callable[[str], Awaitable[Any]], items: str) -> AsyncIterator[Any]:
    token = ""
    while True:
        reply = await fetch(token)
        for item in getattr(reply, items):
            yield item
        token = reply.next_page_token
        if not token:
            return


async def take(
    registry: registry_service_pb2_grpc.RegistryServiceStub,
    rollouts: rollout_service_pb2_grpc.RolloutServiceStub,
    access: access_service_pb2_grpc.AccessServiceStub,
    revision: int,
    metadata: Metadata,
) -> Snapshot:
    """Everything the primary lists now; `revision` is where the edge's
    watch stream was opened before listing (its events follow it)."""
    snap = Snapshot(revision)

    def lister(call: Any, make: Callable[[str], Any]) -> Callable[[str], Awaitable[Any]]:
        def fetch(token: str) -> Awaitable[Any]:
            return call(make(token), metadata=metadata, timeout=60)  # type: ignore[no-any-return]

        return fetch

    def models_request(token: str) -> Any:
        return registry_service_pb2.ListModelsRequest(page_size=PAGE, page_token=token)

    async for m in _pages(lister(registry.ListModels, models_request), "models"):
        snap.models.append(model_plain(m))
        parent = m.name

        def versions_request(token: str, parent: str = parent) -> Any:
            return registry_service_pb2.ListModelVersionsRequest(
                parent=parent, page_size=PAGE, page_token=token
            )

        def aliases_request(token: str, parent: str = parent) -> Any:
            return registry_service_pb2.ListAliasesRequest(
                parent=parent, page_size=PAGE, page_token=token
            )

        def rollouts_request(token: str, parent: str = parent) -> Any:
            return rollout_service_pb2.ListRolloutsRequest(
                parent=parent, page_size=PAGE, page_token=token
            )

        async for v in _pages(
            lister(registry.ListModelVersions, versions_request), "model_versions"
        ):
            snap.versions.append(version_plain(v))
        async for a in _pages(lister(registry.ListAliases, aliases_request), "aliases"):
            snap.aliases.append(alias_plain(a))
        async for r in _pages(lister(rollouts.ListRollouts, rollouts_request), "rollouts"):
            snap.rollouts.append(rollout_plain(r))
    resources = ["registry", *(m["name"] for m in snap.models), *(a["name"] for a in snap.aliases)]
    for resource in resources:
        policy: Any = await access.GetIamPolicy(  # type: ignore[misc]
            access_service_pb2.GetIamPolicyRequest(resource=resource),
            metadata=metadata,
            timeout=60,
        )
        if policy.etag and policy.etag != "0-0":  # "0-0": never set
            snap.policies.append(
                {
                    "resource": resource,
                    "etag": policy.etag,
                    "bindings": [
                        {"role": b.role, "members": list(b.members)} for b in policy.bindings
                    ],
                }
            )
    return snap
