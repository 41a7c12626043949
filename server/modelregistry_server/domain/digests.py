"""Content addresses: `sha256:<64 lowercase hex>`."""

from __future__ import annotations

import re

from modelregistry.v1.error_reasons import ErrorReason

from .errors import InvalidArgument

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def check_digest(value: str, field: str = "digest") -> str:
    if not _DIGEST.fullmatch(value):
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise InvalidArgument(
            ErrorReason.INVALID_DIGEST,
            f"{field}: {shown!r} is not of the form sha256:<64 hex>",
            field,
        )
    return value
