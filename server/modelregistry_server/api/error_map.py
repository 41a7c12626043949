"""The one table from domain errors to gRPC status codes.

Every error carries a google.rpc.Status with exactly one ErrorInfo
(domain `modelregistry.v1`, a stable reason, string metadata), all three
as error_reason.proto defines them.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from modelregistry.v1.error_reasons import ERROR_DOMAIN, ErrorMetadataKey, ErrorReason

from ..domain.errors import DomainError, ErrorKind

STATUS_DETAILS_KEY = "grpc-status-details-bin"

CODES: dict[ErrorKind, grpc.StatusCode] = {
    ErrorKind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorKind.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    ErrorKind.ABORTED: grpc.StatusCode.ABORTED,
    ErrorKind.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorKind.OUT_OF_RANGE: grpc.StatusCode.OUT_OF_RANGE,
    ErrorKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.DATA_LOSS: grpc.StatusCode.DATA_LOSS,
    ErrorKind.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorKind.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
}


def rich_status(
    code: grpc.StatusCode, message: str, reason: ErrorReason, metadata: dict[str, str]
) -> tuple[grpc.StatusCode, str, tuple[tuple[str, bytes], ...]]:
    """(code, message, trailing metadata carrying the google.rpc.Status).

    The reason travels as the proto enum value's name (AIP-193), never its number.
    """
    info = error_details_pb2.ErrorInfo(reason=reason.name, domain=ERROR_DOMAIN, metadata=metadata)
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=getattr(code_pb2, code.name), message=message, details=[detail])
    return code, message, ((STATUS_DETAILS_KEY, status.SerializeToString()),)


# Error messages and metadata may quote the request; these caps keep an error
# (sent twice: the status message and the google.rpc.Status trailer) far below
# the HTTP/2 header limits clients enforce, whatever the caller sent.
MAX_MESSAGE_CHARS = 1024
MAX_METADATA_CHARS = 256
MAX_METADATA_ENTRIES = 16


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def from_domain(
    error: DomainError, request_id: str
) -> tuple[grpc.StatusCode, str, tuple[tuple[str, bytes], ...]]:
    metadata = {
        _cap(key, 64): _cap(value, MAX_METADATA_CHARS)
        for key, value in list(error.metadata.items())[:MAX_METADATA_ENTRIES]
    }
    metadata[ErrorMetadataKey.REQUEST_ID] = request_id
    message = _cap(error.message, MAX_MESSAGE_CHARS)
    return rich_status(CODES[error.kind], message, error.reason, metadata)


def internal(request_id: str) -> tuple[grpc.StatusCode, str, tuple[tuple[str, bytes], ...]]:
    return rich_status(
        grpc.StatusCode.INTERNAL,
        f"internal error; quote request id {request_id} to the operators",
        ErrorReason.INTERNAL,
        {ErrorMetadataKey.REQUEST_ID: request_id},
    )
