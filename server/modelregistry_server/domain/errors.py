"""Domain errors: plain exceptions with a stable reason.

The API layer maps each `ErrorKind` to one gRPC status code (see
`modelregistry_server.api.error_map`); clients branch on `reason`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


class ErrorKind(enum.Enum):
    """What went wrong, independent of the transport."""

    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    ABORTED = "aborted"
    INVALID_ARGUMENT = "invalid_argument"
    FAILED_PRECONDITION = "failed_precondition"
    OUT_OF_RANGE = "out_of_range"
    UNAVAILABLE = "unavailable"
    DATA_LOSS = "data_loss"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    PERMISSION_DENIED = "permission_denied"
    UNAUTHENTICATED = "unauthenticated"


class DomainError(Exception):
    """An error a caller can act on. `message` is safe to show to the caller."""

    kind: ErrorKind = ErrorKind.FAILED_PRECONDITION

    def __init__(self, reason: str, message: str, metadata: Mapping[str, str] | None = None):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata: dict[str, str] = dict(metadata or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r}, {self.message!r})"


class NotFound(DomainError):
    kind = ErrorKind.NOT_FOUND


class AlreadyExists(DomainError):
    kind = ErrorKind.ALREADY_EXISTS


class Aborted(DomainError):
    kind = ErrorKind.ABORTED


class FailedPrecondition(DomainError):
    kind = ErrorKind.FAILED_PRECONDITION


class OutOfRange(DomainError):
    kind = ErrorKind.OUT_OF_RANGE


class Unavailable(DomainError):
    kind = ErrorKind.UNAVAILABLE


class DataLoss(DomainError):
    kind = ErrorKind.DATA_LOSS


class ResourceExhausted(DomainError):
    kind = ErrorKind.RESOURCE_EXHAUSTED


class InvalidArgument(DomainError):
    kind = ErrorKind.INVALID_ARGUMENT

    def __init__(self, reason: str, message: str, field: str = "") -> None:
        super().__init__(reason, message, {"field": field} if field else None)
        self.field = field


class EtagMismatch(Aborted):
    def __init__(self, resource: str) -> None:
        super().__init__(
            "ETAG_MISMATCH",
            f"{resource} changed since the etag was read; read it again and retry",
            {"resource": resource},
        )


def model_not_found(name: str) -> NotFound:
    return NotFound("MODEL_NOT_FOUND", f"model {name} not found", {"resource": name})


def version_not_found(name: str) -> NotFound:
    return NotFound("VERSION_NOT_FOUND", f"version {name} not found", {"resource": name})


def alias_not_found(name: str) -> NotFound:
    return NotFound("ALIAS_NOT_FOUND", f"alias {name} not found", {"resource": name})
