"""Aliases in SQL: compare-and-set promotion pointers."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update

from ..domain import errors
from ..domain.etags import Etag
from ..domain.events import EventType
from ..domain.names import AliasName, ModelName, VersionName
from ..domain.resources import Alias, ModelVersion, Page, VersionState
from ..domain.rules import version_not_ready
from .event_log import append_event
from .models_sql import A, M, V, now_us
from .rows import to_alias, to_version
from .tables import aliases, model_versions, models
from .versions_sql import VersionQueries


class AliasQueries(VersionQueries):
    async def set_alias(self, name: AliasName, version: int, etag: Etag | None) -> Alias:
        version_name = VersionName(name.model, version)
        now = now_us()
        async with self._tx("set_alias", write=True) as conn:
            model_id = await self._model_id(conn, name.parent)
            # A share lock keeps the target from being deleted or archived
            # until this transaction commits.
            target = (
                await conn.execute(
                    select(V.id, V.state)
                    .where(V.model_id == model_id, V.version == version)
                    .with_for_update(read=True)
                )
            ).one_or_none()
            if target is None:
                raise errors.version_not_found(str(version_name))
            if target.state != VersionState.READY.value:
                raise version_not_ready(str(version_name), VersionState(target.state))
            before = (
                await conn.execute(
                    select(aliases, V.version.label("target_version"))
                    .join(model_versions, V.id == A.version_id)
                    .where(A.model_id == model_id, A.name == name.alias)
                )
            ).one_or_none()
            if etag is not None:
                stmt = (
                    update(aliases)
                    .where(
                        A.id == etag.row_id,
                        A.row_version == etag.row_version,
                        A.model_id == model_id,
                        A.name == name.alias,
                    )
                    .values(version_id=target.id, row_version=A.row_version + 1, update_time_us=now)
                    .returning(aliases)
                )
            else:
                ins = self._insert(aliases).values(
                    model_id=model_id,
                    name=name.alias,
                    version_id=target.id,
                    row_version=1,
                    create_time_us=now,
                    update_time_us=now,
                )
                stmt = ins.on_conflict_do_update(
                    index_elements=["model_id", "name"],
                    set_={
                        "version_id": ins.excluded.version_id,
                        "row_version": A.row_version + 1,
                        "update_time_us": ins.excluded.update_time_us,
                    },
                ).returning(aliases)
            row = (await conn.execute(stmt)).one_or_none()
            if row is None:
                raise errors.EtagMismatch(str(name))
            alias = to_alias(row, name.model, name.alias, version)
            old = (
                to_alias(before, name.model, name.alias, before.target_version) if before else None
            )
            await append_event(conn, EventType.ALIAS_SET, name.parent, str(name), old, alias)
        return alias

    def _alias_query(self, name: AliasName) -> Any:
        return (
            select(aliases, V.version.label("target_version"))
            .join(models, M.id == A.model_id)
            .join(model_versions, V.id == A.version_id)
            .where(M.name == name.model, A.name == name.alias)
        )

    async def get_alias(self, name: AliasName) -> Alias:
        async with self._tx("get_alias") as conn:
            row = (await conn.execute(self._alias_query(name))).one_or_none()
        if row is None:
            raise errors.alias_not_found(str(name))
        return to_alias(row, name.model, name.alias, row.target_version)

    async def list_aliases(self, parent: ModelName, after: str | None, limit: int) -> Page[Alias]:
        stmt = (
            select(aliases, V.version.label("target_version"))
            .join(models, M.id == A.model_id)
            .join(model_versions, V.id == A.version_id)
            .where(M.name == parent.model)
        )
        if after is not None:
            stmt = stmt.where(A.name > after)
        stmt = stmt.order_by(A.name).limit(limit + 1)
        async with self._tx("list_aliases") as conn:
            rows = (await conn.execute(stmt)).all()
            if not rows:
                await self._model_id(conn, parent)
        items = [to_alias(r, parent.model, r.name, r.target_version) for r in rows[:limit]]
        return Page(items, more=len(rows) > limit)

    async def delete_alias(self, name: AliasName, etag: Etag | None) -> None:
        async with self._tx("delete_alias", write=True) as conn:
            model_id = await self._model_id(conn, name.parent)
            stmt = delete(aliases).where(A.model_id == model_id, A.name == name.alias)
            if etag is not None:
                stmt = stmt.where(A.id == etag.row_id, A.row_version == etag.row_version)
            deleted = (await conn.execute(stmt.returning(aliases))).one_or_none()
            if deleted is None:
                found = (
                    await conn.execute(
                        select(A.id).where(A.model_id == model_id, A.name == name.alias)
                    )
                ).one_or_none()
                if found is None:
                    raise errors.alias_not_found(str(name))
                raise errors.EtagMismatch(str(name))
            target = (
                await conn.execute(select(V.version).where(V.id == deleted.version_id))
            ).scalar_one()
            old = to_alias(deleted, name.model, name.alias, target)
            await append_event(conn, EventType.ALIAS_DELETED, name.parent, str(name), old, None)

    async def resolve_alias(self, name: AliasName) -> tuple[Alias, ModelVersion]:
        stmt = (
            select(
                model_versions,
                A.id.label("alias_id"),
                A.row_version.label("alias_row_version"),
                A.create_time_us.label("alias_create_time_us"),
                A.update_time_us.label("alias_update_time_us"),
            )
            .select_from(aliases)
            .join(models, M.id == A.model_id)
            .join(model_versions, V.id == A.version_id)
            .where(M.name == name.model, A.name == name.alias)
        )
        async with self._tx("resolve_alias") as conn:
            row = (await conn.execute(stmt)).one_or_none()
        if row is None:
            raise errors.alias_not_found(str(name))
        version = to_version(row, name.model)
        alias = Alias(
            name=name,
            version=version.name,
            create_time_us=row.alias_create_time_us,
            update_time_us=row.alias_update_time_us,
            etag=str(Etag(row.alias_id, row.alias_row_version)),
        )
        return alias, version
