"""Python SDK for the modelreg model registry.

    async with RegistryClient("registry:50051") as registry:
        resolved = await registry.resolve_alias("models/fraud/aliases/production")
        await registry.pull("models/fraud/aliases/production", "./fraud")

`SyncRegistryClient` offers the same methods, blocking. Both return the
`modelregistry.v1` protobuf messages and raise `RegistryError` subclasses.
"""

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
