"""Typed errors for registry calls, rebuilt from the server's google.rpc.Status.

The server attaches one `google.rpc.ErrorInfo` (domain `modelregistry.v1`)
with a stable UPPER_SNAKE `reason` to every error. Callers branch on the
exception class or on `reason`, comparing it with `ErrorReason` members
(`err.reason == ErrorReason.ETAG_MISMATCH`); the message is for people and
may change. The SDK also raises `DataLossError`s of its own with reasons
from the same catalogue (CHECKSUM_MISMATCH, DIGEST_MISMATCH...) when what it
downloads fails verification.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from .v1.error_reasons import ERROR_DOMAIN, STATUS_CODES, ErrorMetadataKey, ErrorReason

STATUS_DETAILS_KEY = "grpc-status-details-bin"
REQUEST_ID_KEY = "x-request-id"


class RegistryError(Exception):
    """A failed registry call.

    `reason` is the server's stable reason, a plain string equal to an
    `ErrorReason` member, or one this SDK does not know yet if the server is
    newer; it is empty when the failure did not come from the registry itself
    (e.g. a refused connection). `request_id` is what to quote to the
    operators when reporting it.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        reason: str,
        message: str,
        metadata: Mapping[str, str] | None = None,
        request_id: str = "",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = str(reason)
        self.message = message
        self.metadata: dict[str, str] = dict(metadata or {})
        self.request_id = request_id

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt with all attributes, so errors survive multiprocessing and
        # task queues that pickle exceptions.
        return (
            type(self),
            (self.code, self.reason, self.message, self.metadata, self.request_id),
        )

    def __str__(self) -> str:
        head = f"{self.code.name} {self.reason}" if self.reason else self.code.name
        return f"{head}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.name}, {self.reason!r}, {self.message!r})"


class NotFoundError(RegistryError):
    """NOT_FOUND: e.g. MODEL_NOT_FOUND, VERSION_NOT_FOUND, ALIAS_NOT_FOUND."""


class AlreadyExistsError(RegistryError):
    """ALREADY_EXISTS: e.g. MODEL_ALREADY_EXISTS."""


class ConflictError(RegistryError):
    """ABORTED: ETAG_MISMATCH. Re-read the resource and decide again."""


class InvalidArgumentError(RegistryError):
    """INVALID_ARGUMENT: the request itself is wrong; `metadata["field"]` says where."""


class FailedPreconditionError(RegistryError):
    """FAILED_PRECONDITION: valid request, but the resource is not in a state that allows it."""


class OutOfRangeError(RegistryError):
    """OUT_OF_RANGE: a revision or offset beyond what the server has."""


class RevisionCompactedError(OutOfRangeError):
    """OUT_OF_RANGE REVISION_COMPACTED: the events asked for are no longer kept.
    List from `oldest_revision`, then watch from there."""

    @property
    def oldest_revision(self) -> int:
        return int(self.metadata.get(ErrorMetadataKey.OLDEST_REVISION, "0") or 0)


class UnavailableError(RegistryError):
    """UNAVAILABLE: the server or its storage cannot be reached; retry later."""


class DeadlineExceededError(RegistryError):
    """DEADLINE_EXCEEDED: no answer within the timeout; a write may still have happened."""


class PermissionDeniedError(RegistryError):
    """PERMISSION_DENIED."""


class UnauthenticatedError(RegistryError):
    """UNAUTHENTICATED."""


class ResourceExhaustedError(RegistryError):
    """RESOURCE_EXHAUSTED: a size or rate limit."""


class DataLossError(RegistryError):
    """DATA_LOSS: data failed verification."""


class InternalError(RegistryError):
    """INTERNAL or UNKNOWN: a fault on the server; quote `request_id` to the operators."""


_BY_CODE: dict[grpc.StatusCode, type[RegistryError]] = {
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.ABORTED: ConflictError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.OUT_OF_RANGE: OutOfRangeError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.DATA_LOSS: DataLossError,
    grpc.StatusCode.INTERNAL: InternalError,
    grpc.StatusCode.UNKNOWN: InternalError,
}

# Every reason the contract defines, with the class of the code it comes with.
# They pin the class even if a proxy in between rewrites the status code; a
# reason this SDK does not know falls back to the code.
_BY_REASON: dict[str, type[RegistryError]] = {
    reason: _BY_CODE.get(grpc.StatusCode[code], RegistryError)
    for reason, code in STATUS_CODES.items()
}
_BY_REASON[ErrorReason.REVISION_COMPACTED] = RevisionCompactedError


class RpcFailure(Protocol):
    """What both grpc.RpcError flavours (sync and aio) expose about a failed call."""

    def code(self) -> grpc.StatusCode: ...

    def details(self) -> str | None: ...

    def trailing_metadata(self) -> Any: ...


def _error_info(trailers: Sequence[tuple[str, str | bytes]]) -> tuple[str, dict[str, str]]:
    """(reason, metadata) from the registry's ErrorInfo, or ("", {}) if there is none."""
    for key, value in trailers:
        if key != STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            status = status_pb2.Status.FromString(value)
        except DecodeError:
            return "", {}
        for detail in status.details:
            info = error_details_pb2.ErrorInfo()
            if detail.Unpack(info) and info.domain == ERROR_DOMAIN:
                return info.reason, dict(info.metadata)
    return "", {}


def from_rpc_error(error: RpcFailure) -> RegistryError:
    """The typed error for a failed call; the class comes from the reason, else the code."""
    code = error.code()
    trailers = tuple(error.trailing_metadata() or ())
    reason, metadata = _error_info(trailers)
    request_id = metadata.get(ErrorMetadataKey.REQUEST_ID, "")
    if not request_id:
        request_id = next(
            (str(v) for k, v in trailers if k == REQUEST_ID_KEY and isinstance(v, str)), ""
        )
    cls = _BY_REASON.get(reason) or _BY_CODE.get(code, RegistryError)
    return cls(code, reason, error.details() or "", metadata, request_id)
