"""Limits on user-supplied fields, checked before anything touches storage.

The limits are part of the contract and are documented in the protos.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from modelregistry.v1.error_reasons import ErrorReason

from .errors import InvalidArgument

MAX_LABELS = 64
LABEL_KEY = re.compile(r"[a-z][a-z0-9_.-]{0,62}")
LABEL_VALUE = re.compile(r"[A-Za-z0-9_.-]{0,63}")
MAX_DISPLAY_NAME = 256
MAX_DESCRIPTION_BYTES = 16 * 1024
MAX_SOURCE_URI = 2048
MAX_METADATA_BYTES = 64 * 1024


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
        if ord(ch) < 32 and not (allow_newlines and ch in "\n\r\t"):
            raise InvalidArgument(
                ErrorReason.INVALID_FIELD, f"{field}: control characters not allowed", field
            )


def check_display_name(value: str, field: str) -> str:
    if len(value) > MAX_DISPLAY_NAME:
        raise InvalidArgument(
            ErrorReason.INVALID_FIELD, f"{field}: at most {MAX_DISPLAY_NAME} characters", field
        )
    _no_controls(value, field, allow_newlines=False)
    return value


def check_description(value: str, field: str) -> str:
    if len(value.encode()) > MAX_DESCRIPTION_BYTES:
        raise InvalidArgument(
            ErrorReason.INVALID_FIELD,
            f"{field}: at most {MAX_DESCRIPTION_BYTES} bytes of UTF-8",
            field,
        )
    _no_controls(value, field, allow_newlines=True)
    return value


def check_source_uri(value: str, field: str) -> str:
    if len(value) > MAX_SOURCE_URI:
        raise InvalidArgument(
            ErrorReason.INVALID_FIELD, f"{field}: at most {MAX_SOURCE_URI} characters", field
        )
    _no_controls(value, field, allow_newlines=False)
    return value


def check_metadata(value: Mapping[str, Any], field: str) -> dict[str, Any]:
    size = len(json.dumps(value, separators=(",", ":")).encode())
    if size > MAX_METADATA_BYTES:
        raise InvalidArgument(
            ErrorReason.INVALID_FIELD,
            f"{field}: at most {MAX_METADATA_BYTES} bytes once serialized, got {size}",
            field,
        )
    return dict(value)
