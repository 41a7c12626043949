"""The narrow interface the service layer needs from a registry store.

One implementation (`SqlRegistryStore`) serves PostgreSQL and SQLite; the
conformance suite in tests/server/store runs against both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..domain.etags import Etag
from ..domain.filters import Filter
from ..domain.names import AliasName, ModelName, RolloutName, VersionName
from ..domain.resources import (
    Alias,
    Model,
    ModelFields,
    ModelVersion,
    Page,
    Resolution,
    Rollout,
    VersionFields,
)


class RegistryStore(Protocol):
    async def ping(self) -> None:
        """Raise Unavailable unless the database answers."""

    async def close(self) -> None: ...

    async def get_or_create_setting(self, key: str, create: Callable[[], bytes]) -> bytes:
        """The setting's value; the first caller on any replica creates it."""

    async def create_model(self, name: ModelName, fields: ModelFields) -> Model: ...

    async def get_model(self, name: ModelName) -> Model: ...

    async def list_models(self, flt: Filter, after: str | None, limit: int) -> Page[Model]:
        """Models in name order, strictly after `after`."""

    async def update_model(
        self, name: ModelName, fields: ModelFields, paths: frozenset[str], etag: Etag | None
    ) -> Model: ...

    async def delete_model(self, name: ModelName, etag: Etag | None, force: bool) -> None: ...

    async def create_version(self, parent: ModelName, fields: VersionFields) -> ModelVersion:
        """Allocate the next number under a lock on the model row, insert."""

    async def get_version(self, name: VersionName) -> ModelVersion: ...

    async def list_versions(
        self, parent: ModelName, flt: Filter, before: int | None, limit: int
    ) -> Page[ModelVersion]:
        """Versions newest first, strictly older than `before`."""

    async def update_version(
        self, name: VersionName, fields: VersionFields, paths: frozenset[str], etag: Etag | None
    ) -> ModelVersion: ...

    async def delete_version(self, name: VersionName, etag: Etag | None, force: bool) -> None: ...

    async def set_alias(self, name: AliasName, version: int, etag: Etag | None) -> Alias:
        """Compare-and-set when `etag` is given, upsert otherwise."""

    async def get_alias(self, name: AliasName) -> Alias: ...

    async def list_aliases(
        self, parent: ModelName, after: str | None, limit: int
    ) -> Page[Alias]: ...

    async def delete_alias(self, name: AliasName, etag: Etag | None) -> None: ...

    async def batch_set_aliases(
        self, parent: ModelName, moves: list[tuple[AliasName, int, Etag | None]]
    ) -> list[Alias]:
        """All or nothing, in one transaction."""

    async def review_version(
        self, name: VersionName, approve: bool, comment: str, etag: Etag | None
    ) -> ModelVersion: ...

    async def resolve_alias(self, name: AliasName) -> Resolution: ...

    async def start_rollout(
        self,
        alias: AliasName,
        candidate: VersionName,
        steps: tuple[int, ...],
        alias_etag: Etag | None,
    ) -> Rollout: ...

    async def get_rollout(self, name: RolloutName) -> Rollout: ...

    async def list_rollouts(
        self, parent: ModelName, active_only: bool, before_id: int | None, limit: int
    ) -> tuple[Page[Rollout], int | None]:
        """Newest first; also the cursor (row id) after the page, if more."""

    async def advance_rollout(
        self, name: RolloutName, etag: Etag | None, percent: int
    ) -> Rollout: ...

    async def pause_rollout(self, name: RolloutName, etag: Etag | None) -> Rollout: ...

    async def resume_rollout(self, name: RolloutName, etag: Etag | None) -> Rollout: ...

    async def rollback_rollout(self, name: RolloutName, etag: Etag | None) -> Rollout: ...
