"""The domain errors of encrypted blobs: a missing or wrong key, damaged bytes."""

from __future__ import annotations

from modelregistry.v1.error_reasons import ErrorMetadataKey, ErrorReason

from ...domain.errors import DataLoss, FailedPrecondition
from .keyring import KeyMismatch, KeyMissing
from .segments import FormatError


def key_error(exc: KeyMissing | KeyMismatch, digest: str) -> FailedPrecondition:
    metadata: dict[str, str] = {
        ErrorMetadataKey.DIGEST: digest,
        ErrorMetadataKey.KEY_ID: exc.key_id,
    }
    if isinstance(exc, KeyMissing):
        return FailedPrecondition(
            ErrorReason.ENCRYPTION_KEY_MISSING,
            f"{digest} is encrypted under key {exc.key_id!r}, which the server's keyring"
            " does not have",
            metadata,
        )
    return FailedPrecondition(
        ErrorReason.ENCRYPTION_KEY_MISMATCH,
        f"the server's key {exc.key_id!r} does not unwrap the data key of {digest}",
        metadata,
    )


def damaged(exc: FormatError, what: str) -> DataLoss:
    """`what` is a digest or `upload <id>`."""
    return DataLoss(
        ErrorReason.BLOB_DAMAGED,
        f"{what} is damaged at offset {exc.offset}: {exc.what}",
        {ErrorMetadataKey.DIGEST: what, ErrorMetadataKey.OFFSET: str(exc.offset)},
    )
