"""Models in SQL (and the server-wide settings row)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from modelregistry.v1.error_reasons import ErrorMetadataKey, ErrorReason
from sqlalchemy import delete, exists, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain import errors
from ..domain.etags import Etag
from ..domain.events import EventType
from ..domain.filters import Filter
from ..domain.names import AliasName, ModelName, VersionName
from ..domain.resources import Model, ModelFields, Page
from .event_log import append_event
from .rows import filter_condition, to_alias, to_model, to_version
from .tables import aliases, model_versions, models, settings
from .transactions import SqlBase, now_us

M, V, A = models.c, model_versions.c, aliases.c


class ModelQueries(SqlBase):
    async def get_or_create_setting(self, key: str, create: Callable[[], bytes]) -> bytes:
        async with self._tx("get_or_create_setting", write=True) as conn:
            stmt = self._insert(settings).values(key=key, value=create())
            await conn.execute(stmt.on_conflict_do_nothing(index_elements=["key"]))
            value: bytes = (
                await conn.execute(select(settings.c.value).where(settings.c.key == key))
            ).scalar_one()
            return value

    async def create_model(self, name: ModelName, fields: ModelFields) -> Model:
        now = now_us()
        stmt = (
            insert(models)
            .values(
                name=name.model,
                uid=str(uuid.uuid4()),
                display_name=fields.display_name,
                description=fields.description,
                labels=fields.labels,
                latest_version=0,
                row_version=1,
                create_time_us=now,
                update_time_us=now,
            )
            .returning(models)
        )
        try:
            async with self._tx("create_model", write=True) as conn:
                model = to_model((await conn.execute(stmt)).one())
                await append_event(conn, EventType.MODEL_CREATED, name, str(name), None, model)
        except IntegrityError:
            raise errors.AlreadyExists(
                ErrorReason.MODEL_ALREADY_EXISTS,
                f"{name} already exists",
                {ErrorMetadataKey.RESOURCE: str(name)},
            ) from None
        return model

    async def get_model(self, name: ModelName) -> Model:
        async with self._tx("get_model") as conn:
            row = (await conn.execute(select(models).where(M.name == name.model))).one_or_none()
        if row is None:
            raise errors.model_not_found(str(name))
        return to_model(row)

    async def list_models(self, flt: Filter, after: str | None, limit: int) -> Page[Model]:
        stmt = select(models).where(filter_condition(models, flt))
        if after is not None:
            stmt = stmt.where(M.name > after)
        stmt = stmt.order_by(M.name).limit(limit + 1)
        async with self._tx("list_models") as conn:
            rows = (await conn.execute(stmt)).all()
        return Page([to_model(r) for r in rows[:limit]], more=len(rows) > limit)

    async def _lock_model(self, conn: AsyncConnection, name: ModelName, etag: Etag | None) -> Any:
        row = (
            await conn.execute(select(models).where(M.name == name.model).with_for_update())
        ).one_or_none()
        if row is None:
            raise errors.model_not_found(str(name))
        if etag is not None and (row.id, row.row_version) != (etag.row_id, etag.row_version):
            raise errors.EtagMismatch(str(name))
        return row

    async def update_model(
        self, name: ModelName, fields: ModelFields, paths: frozenset[str], etag: Etag | None
    ) -> Model:
        values: dict[str, Any] = {p: getattr(fields, p) for p in paths}
        async with self._tx("update_model", write=True) as conn:
            current = await self._lock_model(conn, name, etag)
            # Still conditional on the row version: the lock above makes the
            # check and the write one step, the WHERE keeps it honest.
            row = (
                await conn.execute(
                    update(models)
                    .where(M.id == current.id, M.row_version == current.row_version)
                    .values(**values, row_version=M.row_version + 1, update_time_us=now_us())
                    .returning(models)
                )
            ).one_or_none()
            if row is None:
                raise errors.EtagMismatch(str(name))
            model = to_model(row)
            await append_event(
                conn, EventType.MODEL_UPDATED, name, str(name), to_model(current), model
            )
        return model

    async def delete_model(self, name: ModelName, etag: Etag | None, force: bool) -> None:
        async with self._tx("delete_model", write=True) as conn:
            row = await self._lock_model(conn, name, etag)
            if not force:
                has = (
                    await conn.execute(select(exists().where(V.model_id == row.id)))
                ).scalar_one()
                if has:
                    raise errors.FailedPrecondition(
                        ErrorReason.MODEL_HAS_VERSIONS,
                        f"{name} still has versions; delete them first or use force",
                        {ErrorMetadataKey.RESOURCE: str(name)},
                    )
            gone_aliases = (
                await conn.execute(delete(aliases).where(A.model_id == row.id).returning(aliases))
            ).all()
            numbers = {
                r.id: r.version
                for r in await conn.execute(select(V.id, V.version).where(V.model_id == row.id))
            }
            for a in sorted(gone_aliases, key=lambda a: a.name):
                alias = to_alias(a, name.model, a.name, numbers[a.version_id])
                resource = str(AliasName(name.model, a.name))
                await append_event(conn, EventType.ALIAS_DELETED, name, resource, alias, None)
            gone_versions = (
                await conn.execute(
                    delete(model_versions).where(V.model_id == row.id).returning(model_versions)
                )
            ).all()
            for v in sorted(gone_versions, key=lambda v: v.version):
                version = to_version(v, name.model)
                resource = str(VersionName(name.model, v.version))
                await append_event(conn, EventType.VERSION_DELETED, name, resource, version, None)
            await conn.execute(delete(models).where(M.id == row.id))
            await append_event(conn, EventType.MODEL_DELETED, name, str(name), to_model(row), None)

    async def _model_id(self, conn: AsyncConnection, name: ModelName) -> int:
        model_id = (await conn.execute(select(M.id).where(M.name == name.model))).scalar()
        if model_id is None:
            raise errors.model_not_found(str(name))
        return int(model_id)

    async def _bump_model_version(self, conn: AsyncConnection, parent: ModelName) -> Any:
        counter = (
            await conn.execute(
                update(models)
                .where(M.name == parent.model)
                .values(latest_version=M.latest_version + 1)
                .returning(M.id, M.latest_version)
            )
        ).one_or_none()
        if counter is None:
            raise errors.model_not_found(str(parent))
        return counter
