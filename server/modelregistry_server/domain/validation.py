"""Limits on user-supplied fields, checked before anything touches storage.

The limits are part of the contract and are documented in the protos. Every
field that ends up in a resource is bounded (repeated ones by count too), so
every resource, and so every event that records one, has a size known in
advance: `MAX_EVENT_BYTES` in `events.py` is derived from these numbers.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from modelregistry.v1.error_reasons import ErrorReason

from .errors import InvalidArgument
from .names import validate_id

MAX_LABELS = 64
LABEL_KEY = re.compile(r"[a-z][a-z0-9_.-]{0,62}")
LABEL_VALUE = re.compile(r"[A-Za-z0-9_.-]{0,63}")
MAX_DISPLAY_NAME = 256
MAX_DESCRIPTION_BYTES = 16 * 1024
MAX_SOURCE_URI = 2048
MAX_METADATA_BYTES = 64 * 1024
MAX_METADATA_DEPTH = 16
MAX_PROTECTED_ALIASES = 64
MAX_COMMENT = 4096
# Where an external artifact may live. Anything else (javascript:, file:,
# data:...) is refused: UIs render source_uri as a link, and a path on the
# server's or a client's own disk means nothing to the rest of the fleet.
SOURCE_URI_SCHEMES = frozenset(
    {"s3", "s3a", "gs", "az", "abfs", "abfss", "wasbs", "hdfs", "http", "https", "hf", "oci"}
)
# Bidirectional-text controls reorder what a reader sees ("Trojan Source"),
# so they are refused in display text; no name or description needs them.
_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")


def check_labels(labels: Mapping[str, str], field: str) -> dict[str, str]:
    if len(labels) > MAX_LABELS:
        raise InvalidArgument(
            ErrorReason.INVALID_LABELS,
            f"{field}: at most {MAX_LABELS} labels, got {len(labels)}",
            field,
        )
    for key, value in labels.items():
        if not LABEL_KEY.fullmatch(key):
            raise InvalidArgument(
                ErrorReason.INVALID_LABELS,
                f"{field}: key {_shown(key)} must match [a-z][a-z0-9_.-]{{0,62}}",
                field,
            )
        if not LABEL_VALUE.fullmatch(value):
            raise InvalidArgument(
                ErrorReason.INVALID_LABELS,
                f"{field}: value of {key!r} must be at most 63 characters of [A-Za-z0-9_.-]",
                field,
            )
    return dict(labels)


def _no_controls(value: str, field: str, allow_newlines: bool) -> None:
    for ch in value:
        code = ord(ch)
        if (code < 32 or 0x7F <= code < 0xA0) and not (allow_newlines and ch in "\n\r\t"):
            raise InvalidArgument(
                ErrorReason.INVALID_FIELD, f"{field}: control characters not allowed", field
            )
        if ch in _BIDI_CONTROLS:
            raise InvalidArgument(
                ErrorReason.INVALID_FIELD,
                f"{field}: bidirectional text controls (U+{code:04X}) not allowed",
                field,
            )


def _check_text(value: str, field: str, max_chars: int, allow_newlines: bool) -> str:
    if len(value) > max_chars:
        raise InvalidArgument(
            ErrorReason.INVALID_FIELD, f"{field}: at most {max_chars} characters", field
        )
    _no_controls(value, field, allow_newlines)
    return value


def check_display_name(value: str, field: str) -> str:
    return _check_text(value, field, MAX_DISPLAY_NAME, allow_newlines=False)


def check_description(value: str, field: str) -> str:
    if len(value.encode()) > MAX_DESCRIPTION_BYTES:
        raise InvalidArgument(
            ErrorReason.INVALID_FIELD,
            f"{field}: at most {MAX_DESCRIPTION_BYTES} bytes of UTF-8",
            field,
        )
    _no_controls(value, field, allow_newlines=True)
    return value


def check_comment(value: str, field: str) -> str:
    return _check_text(value, field, MAX_COMMENT, allow_newlines=True)


def check_source_uri(value: str, field: str) -> str:
    """Empty, or `scheme://authority/...` with a scheme of `SOURCE_URI_SCHEMES`."""
    if not value:
        return value
    if len(value) > MAX_SOURCE_URI:
        raise InvalidArgument(
            ErrorReason.INVALID_FIELD, f"{field}: at most {MAX_SOURCE_URI} characters", field
        )
    _no_controls(value, field, allow_newlines=False)
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme not in SOURCE_URI_SCHEMES
        or not value.startswith(f"{parts.scheme}://")
        or not parts.netloc
        or any(ch.isspace() for ch in value)
    ):
        raise InvalidArgument(
            ErrorReason.INVALID_FIELD,
            f"{field}: must be scheme://location/... with a scheme of "
            f"{', '.join(sorted(SOURCE_URI_SCHEMES))}",
            field,
        )
    return value


def check_protected_aliases(values: Iterable[str], field: str) -> tuple[str, ...]:
    """Sorted and without duplicates; at most `MAX_PROTECTED_ALIASES` ids."""
    unique = sorted(set(values))
    if len(unique) > MAX_PROTECTED_ALIASES:
        raise InvalidArgument(
            ErrorReason.INVALID_FIELD,
            f"{field}: at most {MAX_PROTECTED_ALIASES} aliases, got {len(unique)}",
            field,
        )
    for alias in unique:
        validate_id(alias, field)
    return tuple(unique)


def _check_json(value: Any, field: str, depth: int) -> None:
    """What JSON and both databases can store: finite numbers, no NUL, bounded nesting."""
    if depth > MAX_METADATA_DEPTH:
        raise InvalidArgument(
            ErrorReason.INVALID_FIELD,
            f"{field}: nested at most {MAX_METADATA_DEPTH} levels deep",
            field,
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidArgument(
            ErrorReason.INVALID_FIELD, f"{field}: NaN and Infinity not allowed", field
        )
    if isinstance(value, str) and "\x00" in value:
        raise InvalidArgument(
            ErrorReason.INVALID_FIELD, f"{field}: NUL characters not allowed", field
        )
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_json(key, field, depth)
            _check_json(item, field, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_json(item, field, depth + 1)


def check_metadata(value: Mapping[str, Any], field: str) -> dict[str, Any]:
    _check_json(value, field, 1)
    size = len(json.dumps(value, separators=(",", ":"), allow_nan=False).encode())
    if size > MAX_METADATA_BYTES:
        raise InvalidArgument(
            ErrorReason.INVALID_FIELD,
            f"{field}: at most {MAX_METADATA_BYTES} bytes once serialized, got {size}",
            field,
        )
    return dict(value)
