"""The registry's resources as immutable values."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .names import AliasName, ModelName, RolloutName, VersionName


class ApprovalState(enum.Enum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"


@dataclass(frozen=True)
class Approval:
    state: ApprovalState = ApprovalState.PENDING
    actor: str = ""
    comment: str = ""
    time_us: int = 0


class RolloutState(enum.Enum):
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    ROLLED_BACK = "ROLLED_BACK"

    @property
    def running(self) -> bool:
        return self in (RolloutState.ACTIVE, RolloutState.PAUSED)


class VersionState(enum.Enum):
    PENDING_UPLOAD = "PENDING_UPLOAD"
    READY = "READY"
    ARCHIVED = "ARCHIVED"


@dataclass(frozen=True)
class Artifact:
    digest: str
    size_bytes: int
    chunk_size_bytes: int = 0
    media_type: str = ""


@dataclass(frozen=True)
class Model:
    name: ModelName
    uid: str
    display_name: str
    description: str
    labels: dict[str, str]
    create_time_us: int
    update_time_us: int
    etag: str
    latest_version: int
    protected_aliases: tuple[str, ...] = ()
    separation_of_duties: bool = False
    # 0: the registry-wide default applies.
    storage_quota_bytes: int = 0


@dataclass(frozen=True)
class ModelVersion:
    name: VersionName
    uid: str
    state: VersionState
    source_uri: str
    description: str
    labels: dict[str, str]
    metadata: dict[str, Any]
    artifact: Artifact | None
    create_time_us: int
    update_time_us: int
    etag: str
    approval: Approval = Approval()
    # The principal that created it ("" before creators were recorded).
    creator: str = ""


@dataclass(frozen=True)
class Alias:
    name: AliasName
    version: VersionName
    create_time_us: int
    update_time_us: int
    etag: str


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing; `more` says whether rows follow the last one."""

    items: list[T] = field(default_factory=list)
    more: bool = False


# Writable fields, as named in update masks.
@dataclass(frozen=True)
class ModelFields:
    display_name: str = ""
    description: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    protected_aliases: tuple[str, ...] = ()
    separation_of_duties: bool = False
    storage_quota_bytes: int = 0


@dataclass(frozen=True)
class VersionFields:
    source_uri: str = ""
    description: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    state: VersionState | None = None


@dataclass(frozen=True)
class UploadRecord:
    """A resumable upload: what it will produce and until when it may resume."""

    upload_id: str
    version: VersionName | None
    size_bytes: int
    digest: str | None
    media_type: str
    create_time_us: int
    update_time_us: int
    expire_time_us: int


@dataclass(frozen=True)
class Rollout:
    name: RolloutName
    alias: AliasName
    stable_version: VersionName
    candidate_version: VersionName
    steps: tuple[int, ...]
    percent: int
    state: RolloutState
    create_time_us: int
    update_time_us: int
    etag: str


@dataclass(frozen=True)
class Resolution:
    """Everything a serving instance needs from one alias read."""

    alias: Alias
    version: ModelVersion
    rollout: Rollout | None
    candidate: ModelVersion | None
    # The event-log revision the answer reflects: watch from revision + 1.
    revision: int
