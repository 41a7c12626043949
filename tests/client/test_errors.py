"""Typed errors from a google.rpc.Status: by reason, else by code, never a crash."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from modelregistry.errors import (
    ConflictError,
    NotFoundError,
    RegistryError,
    RevisionCompactedError,
    UnavailableError,
    from_rpc_error,
)
from modelregistry.v1.error_reasons import (
    ERROR_DOMAIN,
    STATUS_CODES,
    ErrorMetadataKey,
    ErrorReason,
)


@dataclass
class Failure:
    """A failed call as grpc reports it, carrying one ErrorInfo."""

    status: grpc.StatusCode
    reason: str
    metadata: dict[str, str] = field(default_factory=dict)
    domain: str = ERROR_DOMAIN

    def code(self) -> grpc.StatusCode:
        return self.status

    def details(self) -> str:
        return "what went wrong"

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        info = any_pb2.Any()
        info.Pack(
            error_details_pb2.ErrorInfo(
                reason=self.reason, domain=self.domain, metadata=self.metadata
            )
        )
        status = status_pb2.Status(code=self.status.value[0], details=[info])
        return (("grpc-status-details-bin", status.SerializeToString()),)


def test_a_reason_from_a_newer_server_falls_back_to_the_code() -> None:
    err = from_rpc_error(Failure(grpc.StatusCode.NOT_FOUND, "SOMETHING_NEW"))
    assert type(err) is NotFoundError
    assert err.reason == "SOMETHING_NEW"
    assert str(err) == "NOT_FOUND SOMETHING_NEW: what went wrong"


def test_a_known_reason_pins_the_class_whatever_the_code() -> None:
    # e.g. a proxy in between turned the status into UNAVAILABLE
    err = from_rpc_error(Failure(grpc.StatusCode.UNAVAILABLE, "ETAG_MISMATCH"))
    assert type(err) is ConflictError
    assert err.reason == ErrorReason.ETAG_MISMATCH


@pytest.mark.parametrize("reason", list(ErrorReason), ids=str)
def test_every_reason_gets_the_class_of_its_documented_code(reason: ErrorReason) -> None:
    code = grpc.StatusCode[STATUS_CODES[reason]]
    by_reason = from_rpc_error(Failure(grpc.StatusCode.UNKNOWN, reason.value))
    by_code = from_rpc_error(Failure(code, ""))
    assert isinstance(by_reason, type(by_code))
    assert type(by_reason.reason) is str  # plain, so it pickles and prints as on the wire


def test_revision_compacted_carries_the_oldest_revision() -> None:
    failure = Failure(
        grpc.StatusCode.OUT_OF_RANGE,
        "REVISION_COMPACTED",
        {ErrorMetadataKey.OLDEST_REVISION: "42", ErrorMetadataKey.REQUEST_ID: "r-1"},
    )
    err = from_rpc_error(failure)
    assert isinstance(err, RevisionCompactedError)
    assert (err.oldest_revision, err.request_id) == (42, "r-1")
    copy = pickle.loads(pickle.dumps(err))
    assert (type(copy), copy.reason, copy.oldest_revision) == (type(err), err.reason, 42)


def test_an_error_info_of_another_domain_is_not_ours() -> None:
    failure = Failure(grpc.StatusCode.UNAVAILABLE, "MODEL_NOT_FOUND", domain="example.com")
    err = from_rpc_error(failure)
    assert type(err) is UnavailableError
    assert err.reason == ""


def test_sdk_raised_errors_keep_a_plain_string_reason() -> None:
    err = RegistryError(grpc.StatusCode.DATA_LOSS, ErrorReason.CHECKSUM_MISMATCH, "bad chunk")
    assert type(err.reason) is str
    assert repr(err) == "RegistryError(DATA_LOSS, 'CHECKSUM_MISMATCH', 'bad chunk')"
