"""Model versions in SQL: functions over a connection, called by the store
inside its transaction."""

from __future__ import annotations

import functools
import uuid
from typing import Any

from modelregistry.v1.error_reasons import ErrorMetadataKey, ErrorReason
from sqlalchemy import bindparam, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain import errors
from ..domain.access_errors import separation_of_duties
from ..domain.etags import Etag
from ..domain.events import EventType
from ..domain.filters import Filter
from ..domain.names import AliasName, ModelName, RolloutName, VersionName
from ..domain.protection import check_not_protected_target
from ..domain.request_context import current_actor
from ..domain.resources import (
    ApprovalState,
    ModelVersion,
    Page,
    VersionFields,
    VersionState,
)
from ..domain.rules import check_state_transition, version_has_aliases
from .event_log import append_event
from .locks import RUNNING, bump_version_counter, next_version_number, rows_under
from .protection_sql import protected_aliases_at
from .rows import filter_condition, to_alias, to_version
from .tables import A, M, R, V, aliases, model_versions, models
from .transactions import now_us


@functools.cache
def _create_version_pg(columns: tuple[str, ...]) -> Any:
    """One statement: take the model's next number under its row's lock and
    insert the version with it. Built once, with the values as parameters:
    building it cost about as much server time as running it."""
    bump = bump_version_counter(bindparam("parent")).cte("bump")
    source = select(
        bump.c.id,
        bump.c.latest_version,
        # Not named like the columns: the UPDATE would take such
        # parameters as values to SET on the model's row.
        *(bindparam(f"new_{k}", type_=model_versions.c[k].type) for k in columns),
    )
    names = ["model_id", "version", *columns]
    return insert(model_versions).from_select(names, source).returning(model_versions)


async def create_version(
    conn: AsyncConnection, parent: ModelName, fields: VersionFields
) -> ModelVersion:
    now = now_us()
    state = fields.state or VersionState.PENDING_UPLOAD
    columns = {
        "uid": str(uuid.uuid4()),
        "state": state.value,
        "source_uri": fields.source_uri,
        "description": fields.description,
        "labels": fields.labels,
        "metadata": fields.metadata,
        "creator": current_actor()[:512],
        "row_version": 1,
        "create_time_us": now,
        "update_time_us": now,
    }
    if conn.dialect.name == "postgresql":
        row = (
            await conn.execute(
                _create_version_pg(tuple(columns)),
                {"parent": parent.model, **{f"new_{k}": v for k, v in columns.items()}},
            )
        ).one_or_none()
        if row is None:
            raise errors.model_not_found(str(parent))
    else:
        counter = await next_version_number(conn, parent)
        row = (
            await conn.execute(
                insert(model_versions)
                .values(model_id=counter.id, version=counter.latest_version, **columns)
                .returning(model_versions)
            )
        ).one()
    version = to_version(row, parent.model)
    await append_event(conn, EventType.VERSION_CREATED, parent, str(version.name), None, version)
    return version


def _version_query(name: VersionName) -> Any:
    return (
        select(model_versions)
        .join(models, M.id == V.model_id)
        .where(M.name == name.model, V.version == name.version)
    )


async def get_version(conn: AsyncConnection, name: VersionName) -> ModelVersion:
    row = (await conn.execute(_version_query(name))).one_or_none()
    if row is None:
        raise errors.version_not_found(str(name))
    return to_version(row, name.model)


async def list_versions(
    conn: AsyncConnection, parent: ModelName, flt: Filter, before: int | None, limit: int
) -> Page[ModelVersion]:
    stmt = (
        select(model_versions)
        .join(models, M.id == V.model_id)
        .where(M.name == parent.model, filter_condition(model_versions, flt))
    )
    if before is not None:
        stmt = stmt.where(V.version < before)
    rows = await rows_under(conn, parent, stmt.order_by(V.version.desc()).limit(limit + 1))
    return Page([to_version(r, parent.model) for r in rows[:limit]], more=len(rows) > limit)


async def _lock_version(conn: AsyncConnection, name: VersionName, etag: Etag | None) -> Any:
    row = (
        await conn.execute(_version_query(name).with_for_update(of=model_versions))
    ).one_or_none()
    if row is None:
        raise errors.version_not_found(str(name))
    if etag is not None and (row.id, row.row_version) != (etag.row_id, etag.row_version):
        raise errors.EtagMismatch(str(name))
    return row


async def _aliases_of(conn: AsyncConnection, version_id: int) -> list[str]:
    rows = await conn.execute(select(A.name).where(A.version_id == version_id))
    return [r.name for r in rows]


async def _check_not_in_rollout(conn: AsyncConnection, name: VersionName, version_id: int) -> None:
    running = (
        await conn.execute(
            select(R.rollout_id).where(
                or_(R.stable_version_id == version_id, R.candidate_version_id == version_id),
                R.state.in_(RUNNING),
            )
        )
    ).first()
    if running is not None:
        raise errors.FailedPrecondition(
            ErrorReason.VERSION_IN_ROLLOUT,
            f"{name} takes part in rollout "
            f"{RolloutName(name.model, running.rollout_id)}; finish or roll it back first",
            {ErrorMetadataKey.RESOURCE: str(name)},
        )


async def review_version(
    conn: AsyncConnection, name: VersionName, approve: bool, comment: str, etag: Etag | None
) -> ModelVersion:
    state = ApprovalState.APPROVED if approve else ApprovalState.REJECTED
    current = await _lock_version(conn, name, etag)
    model = (
        await conn.execute(
            select(M.protected_aliases, M.separation_of_duties).where(M.id == current.model_id)
        )
    ).one()
    actor = current_actor()
    if model.separation_of_duties and current.creator and current.creator == actor:
        raise separation_of_duties(str(name), actor)
    if not approve:
        protected = model.protected_aliases or ()
        pointing = await protected_aliases_at(conn, current.model_id, protected, current.id)
        check_not_protected_target(str(name), pointing, "reject")
    row = (
        await conn.execute(
            update(model_versions)
            .where(V.id == current.id)
            .values(
                approval_state=state.value,
                approval_actor=actor[:512],
                approval_comment=comment,
                approval_time_us=now_us(),
                row_version=V.row_version + 1,
                update_time_us=now_us(),
            )
            .returning(model_versions)
        )
    ).one()
    version = to_version(row, name.model)
    kind = EventType.VERSION_APPROVED if approve else EventType.VERSION_REJECTED
    await append_event(conn, kind, name.parent, str(name), to_version(current, name.model), version)
    return version


async def update_version(
    conn: AsyncConnection,
    name: VersionName,
    fields: VersionFields,
    paths: frozenset[str],
    etag: Etag | None,
) -> ModelVersion:
    current = await _lock_version(conn, name, etag)
    values: dict[str, Any] = {p: getattr(fields, p) for p in paths if p != "state"}
    if "state" in paths and fields.state is not None:
        check_state_transition(str(name), VersionState(current.state), fields.state)
        if fields.state == VersionState.ARCHIVED:
            await _check_not_in_rollout(conn, name, current.id)
            targets = await _aliases_of(conn, current.id)
            if targets:
                raise version_has_aliases(str(name), targets)
        values["state"] = fields.state.value
    row = (
        await conn.execute(
            update(model_versions)
            .where(V.id == current.id)
            .values(**values, row_version=V.row_version + 1, update_time_us=now_us())
            .returning(model_versions)
        )
    ).one()
    before, version = to_version(current, name.model), to_version(row, name.model)
    await append_event(conn, EventType.VERSION_UPDATED, name.parent, str(name), before, version)
    return version


async def delete_version(
    conn: AsyncConnection, name: VersionName, etag: Etag | None, force: bool
) -> None:
    current = await _lock_version(conn, name, etag)
    await _check_not_in_rollout(conn, name, current.id)
    targets = await _aliases_of(conn, current.id)
    if targets and not force:
        raise version_has_aliases(str(name), targets)
    gone = (
        await conn.execute(delete(aliases).where(A.version_id == current.id).returning(aliases))
    ).all()
    for a in sorted(gone, key=lambda a: a.name):
        alias = to_alias(a, name.model, a.name, name.version)
        resource = str(AliasName(name.model, a.name))
        await append_event(conn, EventType.ALIAS_DELETED, name.parent, resource, alias, None)
    await conn.execute(delete(model_versions).where(V.id == current.id))
    before = to_version(current, name.model)
    await append_event(conn, EventType.VERSION_DELETED, name.parent, str(name), before, None)
