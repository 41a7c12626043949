"""Python SDK for the modelreg model registry.

    async with RegistryClient("registry:50051") as registry:
        resolved = await registry.resolve_alias("models/fraud/aliases/production")
        await registry.pull("models/fraud/aliases/production", "./fraud")

`SyncRegistryClient` offers the same methods, blocking. Both return the
`modelregistry.v1` protobuf messages and raise `RegistryError` subclasses.
Names are imported on first use, so that importing the generated contract
(`modelregistry.v1`, which the server shares) loads neither the SDK nor grpc.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .artifacts import PullResult, PushResult, pull, push, push_files
    from .client import RegistryClient
    from .errors import (
        AlreadyExistsError,
        ConflictError,
        DataLossError,
        DeadlineExceededError,
        FailedPreconditionError,
        InternalError,
        InvalidArgumentError,
        NotFoundError,
        OutOfRangeError,
        PermissionDeniedError,
        RegistryError,
        ResourceExhaustedError,
        RevisionCompactedError,
        UnauthenticatedError,
        UnavailableError,
    )
    from .messages import (
        Alias,
        Artifact,
        ListAliasesResponse,
        ListModelsResponse,
        ListModelVersionsResponse,
        Model,
        ModelVersion,
        ResolveAliasResponse,
    )
    from .sync import SyncRegistryClient
    from .transport import DEFAULT_TARGET, NO_RETRY, RetryPolicy

# name -> the module of this package that defines it
_EXPORTS = {
    "Alias": "messages",
    "AlreadyExistsError": "errors",
    "Artifact": "messages",
    "ConflictError": "errors",
    "DEFAULT_TARGET": "transport",
    "DataLossError": "errors",
    "DeadlineExceededError": "errors",
    "FailedPreconditionError": "errors",
    "InternalError": "errors",
    "InvalidArgumentError": "errors",
    "ListAliasesResponse": "messages",
    "ListModelVersionsResponse": "messages",
    "ListModelsResponse": "messages",
    "Model": "messages",
    "ModelVersion": "messages",
    "NO_RETRY": "transport",
    "NotFoundError": "errors",
    "OutOfRangeError": "errors",
    "PermissionDeniedError": "errors",
    "PullResult": "artifacts",
    "PushResult": "artifacts",
    "RegistryClient": "client",
    "RegistryError": "errors",
    "ResolveAliasResponse": "messages",
    "ResourceExhaustedError": "errors",
    "RetryPolicy": "transport",
    "RevisionCompactedError": "errors",
    "SyncRegistryClient": "sync",
    "UnauthenticatedError": "errors",
    "UnavailableError": "errors",
    "pull": "artifacts",
    "push": "artifacts",
    "push_files": "artifacts",
}

__all__ = [
    "DEFAULT_TARGET",
    "NO_RETRY",
    "Alias",
    "AlreadyExistsError",
    "Artifact",
    "ConflictError",
    "DataLossError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "InternalError",
    "InvalidArgumentError",
    "ListAliasesResponse",
    "ListModelVersionsResponse",
    "ListModelsResponse",
    "Model",
    "ModelVersion",
    "NotFoundError",
    "OutOfRangeError",
    "PermissionDeniedError",
    "PullResult",
    "PushResult",
    "RegistryClient",
    "RegistryError",
    "ResolveAliasResponse",
    "ResourceExhaustedError",
    "RetryPolicy",
    "RevisionCompactedError",
    "SyncRegistryClient",
    "UnauthenticatedError",
    "UnavailableError",
    "pull",
    "push",
    "push_files",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
