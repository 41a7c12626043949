"""The protobuf messages the SDK takes and returns, and small builders for them.

Re-exported so that callers write `modelregistry.Model` rather than reaching
into the generated `v1` package; they are the wire messages themselves.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from google.protobuf import field_mask_pb2, struct_pb2

from .v1.registry_service_pb2 import (
    ListAliasesResponse,
    ListModelsResponse,
    ListModelVersionsResponse,
    ResolveAliasResponse,
)
from .v1.resources_pb2 import Alias, Artifact, Model, ModelVersion

__all__ = [
    "Alias",
    "Artifact",
    "ListAliasesResponse",
    "ListModelVersionsResponse",
    "ListModelsResponse",
    "Model",
    "ModelVersion",
    "ResolveAliasResponse",
    "field_mask",
    "to_struct",
    "version_name",
    "with_etag",
]

Etagged = TypeVar("Etagged", Model, ModelVersion)


def to_struct(metadata: Mapping[str, Any] | struct_pb2.Struct | None) -> struct_pb2.Struct | None:
    """A Struct from a JSON-like mapping.

    Goes through JSON so that values a Struct cannot hold (sets, bytes...)
    fail here with a TypeError instead of producing a half-filled message.
    """
    if metadata is None or isinstance(metadata, struct_pb2.Struct):
        return metadata
    struct = struct_pb2.Struct()
    struct.update(json.loads(json.dumps(metadata)))
    return struct


def version_name(alias: str, version: int | str) -> str:
    """`models/m/versions/3` for version 3 of the model that alias `alias` belongs to;
    a string is taken as a full version name already."""
    if isinstance(version, str):
        return version
    model = alias.split("/aliases/", 1)[0]
    return f"{model}/versions/{version}"


def with_etag(message: Etagged, etag: str) -> Etagged:
    """A copy with another etag; the caller's message is left as it was."""
    copy = type(message)()
    copy.CopyFrom(message)
    copy.etag = etag
    return copy


def field_mask(paths: Iterable[str]) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))
