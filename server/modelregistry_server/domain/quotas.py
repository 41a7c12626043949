"""Storage quotas: what a model may store, and the bounds an owner may set.

A model's usage is the bytes of the unique blobs its versions reference plus
the declared sizes of its open uploads. The check runs when an upload
starts, before any byte is stored, under a lock on the model row so two
uploads starting together cannot both squeeze under the limit (see
store.quotas_sql; the server's flags set the limits).
"""

from __future__ import annotations

from dataclasses import dataclass

from modelregistry.v1.error_reasons import ErrorReason

from . import errors

MIB = 1024 * 1024
MIN_QUOTA_BYTES = MIB
MAX_QUOTA_BYTES = 1 << 50  # 1 PiB


def check_quota(value: int, field: str) -> int:
    """0 (the registry default) or 1 MiB to 1 PiB."""
    if value != 0 and not MIN_QUOTA_BYTES <= value <= MAX_QUOTA_BYTES:
        raise errors.InvalidArgument(
            ErrorReason.INVALID_FIELD,
            f"{field}: 0 (the registry default) or {MIN_QUOTA_BYTES} to {MAX_QUOTA_BYTES} bytes",
            field,
        )
    return value


@dataclass(frozen=True)
class UploadLimits:
    # A model without its own quota may store this much; 0: unlimited.
    default_model_quota_bytes: int = 0
    # Open (unfinished, unexpired) uploads per principal; 0: unlimited.
    max_open_uploads_per_principal: int = 0

    def limit(self, own_quota: int) -> int:
        """The quota in force for a model whose own is `own_quota` (0: unlimited)."""
        return own_quota or self.default_model_quota_bytes


@dataclass(frozen=True)
class StorageUsage:
    # The quota in force; 0: unlimited.
    limit_bytes: int
    used_bytes: int
