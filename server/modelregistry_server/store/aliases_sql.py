"""Aliases in SQL: compare-and-set promotion pointers."""

from __future__ import annotations

from typing import Any

from modelregistry.v1.error_reasons import ErrorMetadataKey, ErrorReason
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from ..domain import errors
from ..domain.etags import Etag
from ..domain.events import EventType
from ..domain.names import AliasName, ModelName, RolloutName, VersionName
from ..domain.resources import Alias, ApprovalState, Page, VersionState
from ..domain.rules import version_not_ready
from .event_log import append_event
from .models_sql import A, M, V
from .rows import to_alias
from .tables import aliases, model_versions, models
from .transactions import now_us
from .versions_sql import RUNNING, R, VersionQueries

PreviousTarget = aliased(model_versions, name="previous_target")


class AliasQueries(VersionQueries):
    async def _model_for_aliases(self, conn: AsyncConnection, parent: ModelName) -> Any:
        """The model row, share-locked so its protected aliases hold still."""
        row = (
            await conn.execute(
                select(M.id, M.protected_aliases)
                .where(M.name == parent.model)
                .with_for_update(read=True)
            )
        ).one_or_none()
        if row is None:
            raise errors.model_not_found(str(parent))
        return row

    async def _running_rollout(
        self, conn: AsyncConnection, model_id: int, alias: str
    ) -> str | None:
        found = (
            await conn.execute(
                select(R.rollout_id).where(
                    R.model_id == model_id, R.alias == alias, R.state.in_(RUNNING)
                )
            )
        ).first()
        return None if found is None else str(found.rollout_id)

    async def _ready_target(
        self, conn: AsyncConnection, model: Any, alias: str, version_name: VersionName
    ) -> Any:
        """The version row an alias may point at: READY, and APPROVED if the
        alias is protected. Share-locked until commit so it is neither
        deleted nor archived meanwhile."""
        running = (
            select(R.rollout_id)
            .where(R.model_id == model.id, R.alias == alias, R.state.in_(RUNNING))
            .limit(1)
            .scalar_subquery()
        )
        # One round trip: the target, the alias as it is now (if it exists)
        # and the alias's running rollout (if any).
        target = (
            await conn.execute(
                select(
                    V.id,
                    V.state,
                    V.approval_state,
                    A.id.label("alias_id"),
                    A.row_version.label("alias_row_version"),
                    A.create_time_us.label("alias_create_time_us"),
                    A.update_time_us.label("alias_update_time_us"),
                    PreviousTarget.c.version.label("alias_version"),
                    running.label("running_rollout"),
                )
                .select_from(model_versions)
                .outerjoin(aliases, (A.model_id == V.model_id) & (A.name == alias))
                .outerjoin(PreviousTarget, PreviousTarget.c.id == A.version_id)
                .where(V.model_id == model.id, V.version == version_name.version)
                .with_for_update(read=True, of=model_versions)
            )
        ).one_or_none()
        if target is None:
            raise errors.version_not_found(str(version_name))
        if target.state != VersionState.READY.value:
            raise version_not_ready(str(version_name), VersionState(target.state))
        if alias in (model.protected_aliases or ()) and (
            target.approval_state != ApprovalState.APPROVED.value
        ):
            raise errors.FailedPrecondition(
                ErrorReason.VERSION_NOT_APPROVED,
                f"alias {alias!r} is protected: {version_name} must be APPROVED "
                f"(it is {target.approval_state})",
                {ErrorMetadataKey.RESOURCE: str(version_name), ErrorMetadataKey.ALIAS: alias},
            )
        return target

    async def _write_alias(
        self,
        conn: AsyncConnection,
        model: Any,
        name: AliasName,
        version: int,
        etag: Etag | None,
        via_rollout: bool = False,
    ) -> Alias:
        version_name = VersionName(name.model, version)
        target = await self._ready_target(conn, model, name.alias, version_name)
        if not via_rollout and target.running_rollout is not None:
            raise errors.FailedPrecondition(
                ErrorReason.ROLLOUT_IN_PROGRESS,
                f"{name} is being rolled out by "
                f"{RolloutName(name.model, target.running_rollout)}; "
                "advance, complete or roll it back instead",
                {ErrorMetadataKey.RESOURCE: str(name)},
            )
        now = now_us()
        before = None
        if target.alias_id is not None:
            before = Alias(
                name=name,
                version=VersionName(name.model, target.alias_version),
                create_time_us=target.alias_create_time_us,
                update_time_us=target.alias_update_time_us,
                etag=str(Etag(target.alias_id, target.alias_row_version)),
            )
        if etag is not None:
            stmt = (
                update(aliases)
                .where(
                    A.id == etag.row_id,
                    A.row_version == etag.row_version,
                    A.model_id == model.id,
                    A.name == name.alias,
                )
                .values(version_id=target.id, row_version=A.row_version + 1, update_time_us=now)
                .returning(aliases)
            )
        else:
            ins = self._insert(aliases).values(
                model_id=model.id,
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
        await append_event(conn, EventType.ALIAS_SET, name.parent, str(name), before, alias)
        return alias

    async def set_alias(self, name: AliasName, version: int, etag: Etag | None) -> Alias:
        async with self._tx("set_alias", write=True) as conn:
            model = await self._model_for_aliases(conn, name.parent)
            return await self._write_alias(conn, model, name, version, etag)

    async def batch_set_aliases(
        self, parent: ModelName, moves: list[tuple[AliasName, int, Etag | None]]
    ) -> list[Alias]:
        """All moves in one transaction: any failure leaves every alias as it was."""
        async with self._tx("batch_set_aliases", write=True) as conn:
            model = await self._model_for_aliases(conn, parent)
            return [await self._write_alias(conn, model, n, v, e) for n, v, e in moves]

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
            rollout = await self._running_rollout(conn, model_id, name.alias)
            if rollout is not None:
                raise errors.FailedPrecondition(
                    ErrorReason.ROLLOUT_IN_PROGRESS,
                    f"{name} is being rolled out by {RolloutName(name.model, rollout)}",
                    {ErrorMetadataKey.RESOURCE: str(name)},
                )
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
