"""The registry store on SQLAlchemy Core: PostgreSQL in production, SQLite embedded.

Each method is one transaction (opened by `SqlBase._tx`, which maps database
errors and runs commit hooks) around one function of a per-resource module:
models_sql, versions_sql, aliases_sql, rollouts_sql. The model-row locks
those functions share are in locks.py.

Conditional writes are conditional UPDATEs (`WHERE id = ? AND row_version = ?`),
never read-modify-write in Python. Version numbers come from a counter on the
model row, incremented under that row's lock, so concurrent creates never
collide and numbers are never reused. Every write appends its event to the
log in the same transaction (see event_log.py).
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select

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
from . import aliases_sql, models_sql, rollouts_sql, versions_sql
from .transactions import SqlBase


class SqlRegistryStore(SqlBase):
    async def ping(self) -> None:
        """Raise unless the database answers. Not traced: health calls it every
        few seconds, and a root span each time would drown real traces."""
        async with self._engine.connect() as conn:
            await conn.execute(select(1))

    async def close(self) -> None:
        if self._reads is not None:
            await self._reads.close()
        await self._engine.dispose()

    async def get_or_create_setting(self, key: str, create: Callable[[], bytes]) -> bytes:
        async with self._tx("get_or_create_setting", write=True) as conn:
            return await models_sql.get_or_create_setting(conn, key, create)

    # -- models -----------------------------------------------------------------

    async def create_model(self, name: ModelName, fields: ModelFields) -> Model:
        async with self._tx("create_model", write=True) as conn:
            return await models_sql.create_model(conn, name, fields)

    async def get_model(self, name: ModelName) -> Model:
        async with self._tx("get_model") as conn:
            return await models_sql.get_model(conn, name)

    async def list_models(
        self, flt: Filter, after: str | None, limit: int, only: frozenset[str] | None = None
    ) -> Page[Model]:
        async with self._tx("list_models") as conn:
            return await models_sql.list_models(conn, flt, after, limit, only)

    async def update_model(
        self, name: ModelName, fields: ModelFields, paths: frozenset[str], etag: Etag | None
    ) -> Model:
        async with self._tx("update_model", write=True) as conn:
            return await models_sql.update_model(conn, name, fields, paths, etag)

    async def delete_model(self, name: ModelName, etag: Etag | None, force: bool) -> None:
        async with self._tx("delete_model", write=True) as conn:
            await models_sql.delete_model(conn, name, etag, force)

    # -- versions ---------------------------------------------------------------

    async def create_version(self, parent: ModelName, fields: VersionFields) -> ModelVersion:
        async with self._tx("create_version", write=True) as conn:
            return await versions_sql.create_version(conn, parent, fields)

    async def get_version(self, name: VersionName) -> ModelVersion:
        async with self._tx("get_version") as conn:
            return await versions_sql.get_version(conn, name)

    async def list_versions(
        self, parent: ModelName, flt: Filter, before: int | None, limit: int
    ) -> Page[ModelVersion]:
        async with self._tx("list_versions") as conn:
            return await versions_sql.list_versions(conn, parent, flt, before, limit)

    async def update_version(
        self, name: VersionName, fields: VersionFields, paths: frozenset[str], etag: Etag | None
    ) -> ModelVersion:
        async with self._tx("update_version", write=True) as conn:
            return await versions_sql.update_version(conn, name, fields, paths, etag)

    async def delete_version(self, name: VersionName, etag: Etag | None, force: bool) -> None:
        async with self._tx("delete_version", write=True) as conn:
            await versions_sql.delete_version(conn, name, etag, force)

    async def review_version(
        self, name: VersionName, approve: bool, comment: str, etag: Etag | None
    ) -> ModelVersion:
        async with self._tx("review_version", write=True) as conn:
            return await versions_sql.review_version(conn, name, approve, comment, etag)

    # -- aliases ----------------------------------------------------------------

    async def set_alias(self, name: AliasName, version: int, etag: Etag | None) -> Alias:
        async with self._tx("set_alias", write=True) as conn:
            return await aliases_sql.set_alias(conn, name, version, etag)

    async def batch_set_aliases(
        self, parent: ModelName, moves: list[tuple[AliasName, int, Etag | None]]
    ) -> list[Alias]:
        """All moves in one transaction: any failure leaves every alias as it was."""
        async with self._tx("batch_set_aliases", write=True) as conn:
            return await aliases_sql.batch_set_aliases(conn, parent, moves)

    async def get_alias(self, name: AliasName) -> Alias:
        async with self._tx("get_alias") as conn:
            return await aliases_sql.get_alias(conn, name)

    async def list_aliases(self, parent: ModelName, after: str | None, limit: int) -> Page[Alias]:
        async with self._tx("list_aliases") as conn:
            return await aliases_sql.list_aliases(conn, parent, after, limit)

    async def delete_alias(self, name: AliasName, etag: Etag | None) -> None:
        async with self._tx("delete_alias", write=True) as conn:
            await aliases_sql.delete_alias(conn, name, etag)

    async def resolve_alias(self, name: AliasName) -> Resolution:
        async with self._tx("resolve_alias") as conn:
            return await rollouts_sql.resolve_alias(conn, name)

    # -- rollouts ---------------------------------------------------------------

    async def start_rollout(
        self,
        alias: AliasName,
        candidate: VersionName,
        steps: tuple[int, ...],
        alias_etag: Etag | None,
    ) -> Rollout:
        async with self._tx("start_rollout", write=True) as conn:
            return await rollouts_sql.start_rollout(conn, alias, candidate, steps, alias_etag)

    async def get_rollout(self, name: RolloutName) -> Rollout:
        async with self._tx("get_rollout") as conn:
            return await rollouts_sql.get_rollout(conn, name)

    async def list_rollouts(
        self, parent: ModelName, active_only: bool, before_id: int | None, limit: int
    ) -> tuple[Page[Rollout], int | None]:
        async with self._tx("list_rollouts") as conn:
            return await rollouts_sql.list_rollouts(conn, parent, active_only, before_id, limit)

    async def advance_rollout(self, name: RolloutName, etag: Etag | None, percent: int) -> Rollout:
        async with self._tx("advance_rollout", write=True) as conn:
            return await rollouts_sql.advance_rollout(conn, name, etag, percent)

    async def pause_rollout(self, name: RolloutName, etag: Etag | None) -> Rollout:
        async with self._tx("pause_rollout", write=True) as conn:
            return await rollouts_sql.pause_rollout(conn, name, etag)

    async def resume_rollout(self, name: RolloutName, etag: Etag | None) -> Rollout:
        async with self._tx("resume_rollout", write=True) as conn:
            return await rollouts_sql.resume_rollout(conn, name, etag)

    async def rollback_rollout(self, name: RolloutName, etag: Etag | None) -> Rollout:
        async with self._tx("rollback_rollout", write=True) as conn:
            return await rollouts_sql.rollback_rollout(conn, name, etag)
