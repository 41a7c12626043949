"""Domain errors: plain exceptions with a stable reason.

The API layer maps each `ErrorKind` to one gRPC status code (see
`modelregistry_server.api.error_map`); clients branch on `reason`. Reasons
and metadata keys come from the contract (`ErrorReason`, `ErrorMetadataKey`
in error_reason.proto), so a reason the contract does not define cannot be
raised.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from modelregistry.v1.error_reasons import ErrorMetadataKey, ErrorReason


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

    def __init__(
        self, reason: ErrorReason, message: str, metadata: Mapping[str, str] | None = None
    ):
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


class Unauthenticated(DomainError):
    kind = ErrorKind.UNAUTHENTICATED


class PermissionDenied(DomainError):
    kind = ErrorKind.PERMISSION_DENIED


class InvalidArgument(DomainError):
    kind = ErrorKind.INVALID_ARGUMENT

    def __init__(self, reason: ErrorReason, message: str, field: str = "") -> None:
        super().__init__(reason, message, {ErrorMetadataKey.FIELD: field} if field else None)
        self.field = field


class EtagMismatch(Aborted):
    def __init__(self, resource: str) -> None:
        super().__init__(
            ErrorReason.ETAG_MISMATCH,
            f"{resource} changed since the etag was read; read it again and retry",
            {ErrorMetadataKey.RESOURCE: resource},
        )


def model_not_found(name: str) -> NotFound:
    return NotFound(
        ErrorReason.MODEL_NOT_FOUND, f"model {name} not found", {ErrorMetadataKey.RESOURCE: name}
    )


def version_not_found(name: str) -> NotFound:
    return NotFound(
        ErrorReason.VERSION_NOT_FOUND,
        f"version {name} not found",
        {ErrorMetadataKey.RESOURCE: name},
    )


def alias_not_found(name: str) -> NotFound:
    return NotFound(
        ErrorReason.ALIAS_NOT_FOUND, f"alias {name} not found", {ErrorMetadataKey.RESOURCE: name}
    )


# Blob store errors. Reasons are part of the contract: clients branch on them.


def blob_not_found(digest: str) -> NotFound:
    return NotFound(
        ErrorReason.BLOB_NOT_FOUND, f"blob {digest} not found", {ErrorMetadataKey.DIGEST: digest}
    )


def offset_out_of_range(offset: int, size: int) -> OutOfRange:
    return OutOfRange(
        ErrorReason.OFFSET_OUT_OF_RANGE,
        f"offset {offset} is past the end of the blob ({size} bytes)",
        {ErrorMetadataKey.OFFSET: str(offset), ErrorMetadataKey.SIZE: str(size)},
    )


def digest_mismatch(expected: str, actual: str) -> InvalidArgument:
    """The declared digest disagrees with the bytes received (a client error, not ours)."""
    return InvalidArgument(
        ErrorReason.DIGEST_MISMATCH,
        f"the uploaded bytes hash to {actual}, not the declared {expected}",
        "expected_digest",
    )


def size_mismatch(expected: int, actual: int) -> InvalidArgument:
    return InvalidArgument(
        ErrorReason.SIZE_MISMATCH,
        f"{actual} bytes were uploaded, not the declared {expected}",
        "expected_size",
    )


def upload_not_found(upload_id: str) -> NotFound:
    """For the upload sessions in the database and the staging in a blob store alike."""
    shown = upload_id[:128]
    return NotFound(
        ErrorReason.UPLOAD_NOT_FOUND,
        f"upload {shown} not found: unknown, expired, cancelled or already finished",
        {ErrorMetadataKey.UPLOAD_ID: shown},
    )


def upload_exists(upload_id: str) -> AlreadyExists:
    return AlreadyExists(
        ErrorReason.UPLOAD_EXISTS,
        f"upload {upload_id} already exists",
        {ErrorMetadataKey.UPLOAD_ID: upload_id},
    )


def upload_finished(upload_id: str) -> FailedPrecondition:
    return FailedPrecondition(
        ErrorReason.UPLOAD_FINISHED,
        f"upload {upload_id} is already committed, cancelled or closed",
        {ErrorMetadataKey.UPLOAD_ID: upload_id},
    )


def blob_store_unavailable(detail: str) -> Unavailable:
    """`detail` must be safe to show: a category, never a raw exception text."""
    return Unavailable(
        ErrorReason.BLOB_STORE_UNAVAILABLE, f"the blob store is unavailable: {detail}"
    )


def blob_store_full() -> ResourceExhausted:
    return ResourceExhausted(ErrorReason.BLOB_STORE_FULL, "the blob store is out of space")
