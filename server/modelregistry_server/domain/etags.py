"""Etags: opaque strings built from a row's surrogate id and version counter.

The id makes an etag from a deleted-and-recreated row never match the new
row; the counter changes on every write.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelregistry.v1.error_reasons import ErrorReason

from .errors import InvalidArgument

_ETAG = re.compile(r"([0-9a-f]{1,16})-([0-9a-f]{1,16})")


@dataclass(frozen=True)
class Etag:
    row_id: int
    row_version: int

    def __str__(self) -> str:
        return f"{self.row_id:x}-{self.row_version:x}"


def parse_etag(value: str, field: str = "etag") -> Etag | None:
    """None for the empty string (an unconditional write)."""
    if not value:
        return None
    m = _ETAG.fullmatch(value)
    if not m:
        raise InvalidArgument(
            ErrorReason.INVALID_ETAG, f"{field}: not an etag issued by this server", field
        )
    return Etag(int(m.group(1), 16), int(m.group(2), 16))
