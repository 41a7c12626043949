"""Resource names (AIP-122): parsing and formatting.

`models/{model}`, `models/{model}/versions/{version}`,
`models/{model}/aliases/{alias}`. Ids are lowercase letters, digits and
hyphens, start with a letter, do not end with a hyphen, 1 to 63 characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelregistry.v1.error_reasons import ErrorReason

from .errors import InvalidArgument

ID_PATTERN = r"[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?"
_ID = re.compile(ID_PATTERN)
_MODEL = re.compile(rf"models/({ID_PATTERN})")
_VERSION = re.compile(rf"models/({ID_PATTERN})/versions/([1-9][0-9]{{0,17}})")
_ALIAS = re.compile(rf"models/({ID_PATTERN})/aliases/({ID_PATTERN})")
_ROLLOUT = re.compile(rf"models/({ID_PATTERN})/rollouts/([0-9a-f]{{12}})")


@dataclass(frozen=True, order=True)
class ModelName:
    model: str

    def __str__(self) -> str:
        return f"models/{self.model}"


@dataclass(frozen=True, order=True)
class VersionName:
    model: str
    version: int

    @property
    def parent(self) -> ModelName:
        return ModelName(self.model)

    def __str__(self) -> str:
        return f"models/{self.model}/versions/{self.version}"


@dataclass(frozen=True, order=True)
class AliasName:
    model: str
    alias: str

    @property
    def parent(self) -> ModelName:
        return ModelName(self.model)

    def __str__(self) -> str:
        return f"models/{self.model}/aliases/{self.alias}"


@dataclass(frozen=True, order=True)
class RolloutName:
    model: str
    rollout: str

    @property
    def parent(self) -> ModelName:
        return ModelName(self.model)

    def __str__(self) -> str:
        return f"models/{self.model}/rollouts/{self.rollout}"


def _bad(kind: str, value: str, field: str, example: str) -> InvalidArgument:
    shown = value if len(value) <= 80 else value[:77] + "..."
    return InvalidArgument(
        ErrorReason.INVALID_NAME,
        f"{field}: {shown!r} is not a valid {kind} name (expected {example})",
        field,
    )


def validate_id(value: str, field: str) -> str:
    if not _ID.fullmatch(value):
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise InvalidArgument(
            ErrorReason.INVALID_NAME,
            f"{field}: {shown!r} must be 1-63 lowercase letters, digits or hyphens, "
            "start with a letter and not end with a hyphen",
            field,
        )
    return value


def parse_model_name(value: str, field: str = "name") -> ModelName:
    m = _MODEL.fullmatch(value)
    if not m:
        raise _bad("model", value, field, "models/{model}")
    return ModelName(m.group(1))


def parse_version_name(value: str, field: str = "name") -> VersionName:
    m = _VERSION.fullmatch(value)
    if not m:
        raise _bad("version", value, field, "models/{model}/versions/{number}")
    return VersionName(m.group(1), int(m.group(2)))


def parse_alias_name(value: str, field: str = "name") -> AliasName:
    m = _ALIAS.fullmatch(value)
    if not m:
        raise _bad("alias", value, field, "models/{model}/aliases/{alias}")
    return AliasName(m.group(1), m.group(2))


def parse_rollout_name(value: str, field: str = "name") -> RolloutName:
    m = _ROLLOUT.fullmatch(value)
    if not m:
        raise _bad("rollout", value, field, "models/{model}/rollouts/{rollout}")
    return RolloutName(m.group(1), m.group(2))
