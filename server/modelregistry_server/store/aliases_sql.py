"""Aliases in SQL, compare-and-set promotion pointers: functions over a
connection, called by the store inside its transaction. Rollouts move aliases
through `write_alias` too."""

from __future__ import annotations

import functools
from typing import Any

from modelregistry.v1.error_reasons import ErrorMetadataKey, ErrorReason
from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from ..domain import errors
from ..domain.etags import Etag
from ..domain.events import EventType
from ..domain.names import AliasName, ModelName, RolloutName, VersionName
from ..domain.resources import Alias, ApprovalState, Page, VersionState
from ..domain.rules import version_not_ready
from .event_log import append_event
from .locks import RUNNING, model_id, rows_under, running_rollout, share_lock_model
from .rows import to_alias
from .signatures_sql import check_signed
from .tables import A, M, R, V, aliases, model_versions, models
from .transactions import insert_for, now_us

PreviousTarget = aliased(model_versions, name="previous_target")


@functools.cache
def _ready_target_query() -> Any:
    """One round trip: the target, the alias as it is now (if it exists) and
    the alias's running rollout (if any); the target share-locked. Built
    once: building it cost more server time than running it."""
    model: Any = bindparam("p_model")
    alias: Any = bindparam("p_alias")
    running = (
        select(R.rollout_id)
        .where(R.model_id == model, R.alias == alias, R.state.in_(RUNNING))
        .limit(1)
        .scalar_subquery()
    )
    return (
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
        .where(V.model_id == model, V.version == bindparam("p_version"))
        .with_for_update(read=True, of=model_versions)
    )


# The writes below name their parameters unlike the columns, which an
# UPDATE would take as values to SET.
@functools.cache
def _compare_and_set() -> Any:
    return (
        update(aliases)
        .where(
            A.id == bindparam("p_row_id"),
            A.row_version == bindparam("p_row_version"),
            A.model_id == bindparam("p_model"),
            A.name == bindparam("p_alias"),
        )
        .values(
            version_id=bindparam("p_version_id"),
            row_version=A.row_version + 1,
            update_time_us=bindparam("p_now"),
        )
        .returning(aliases)
    )


@functools.cache
def _upsert(dialect: str) -> Any:
    ins = insert_for(dialect, aliases).values(
        model_id=bindparam("p_model"),
        name=bindparam("p_alias"),
        version_id=bindparam("p_version_id"),
        row_version=1,
        create_time_us=bindparam("p_now"),
        update_time_us=bindparam("p_now"),
    )
    return ins.on_conflict_do_update(
        index_elements=["model_id", "name"],
        set_={
            "version_id": ins.excluded.version_id,
            "row_version": A.row_version + 1,
            "update_time_us": ins.excluded.update_time_us,
        },
    ).returning(aliases)


async def ready_target(
    conn: AsyncConnection,
    model: Any,
    alias: str,
    version_name: VersionName,
    gate_signature: bool = True,
) -> Any:
    """The version row an alias may point at: READY, APPROVED if the alias
    is protected, signed if the trust policy requires it (unless
    `gate_signature` is off: a rollout's candidate passed the gate when it
    started). Share-locked until commit so it is neither deleted nor
    archived meanwhile."""
    params = {"p_model": model.id, "p_alias": alias, "p_version": version_name.version}
    target = (await conn.execute(_ready_target_query(), params)).one_or_none()
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
    if gate_signature:
        await check_signed(conn, version_name.parent, alias, target.id, version_name)
    return target


async def write_alias(
    conn: AsyncConnection,
    model: Any,
    name: AliasName,
    version: int,
    etag: Etag | None,
    via_rollout: bool = False,
) -> Alias:
    """Point `name` at `version` of `model` (a share-locked model row):
    compare-and-set when `etag` is given, upsert otherwise."""
    version_name = VersionName(name.model, version)
    target = await ready_target(conn, model, name.alias, version_name, not via_rollout)
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
    params = {"p_model": model.id, "p_alias": name.alias, "p_version_id": target.id, "p_now": now}
    if etag is not None:
        stmt = _compare_and_set()
        params.update(p_row_id=etag.row_id, p_row_version=etag.row_version)
    else:
        stmt = _upsert(conn.dialect.name)
    row = (await conn.execute(stmt, params)).one_or_none()
    if row is None:
        raise errors.EtagMismatch(str(name))
    alias = to_alias(row, name.model, name.alias, version)
    await append_event(conn, EventType.ALIAS_SET, name.parent, str(name), before, alias)
    return alias


async def set_alias(
    conn: AsyncConnection, name: AliasName, version: int, etag: Etag | None
) -> Alias:
    model = await share_lock_model(conn, name.parent)
    return await write_alias(conn, model, name, version, etag)


async def batch_set_aliases(
    conn: AsyncConnection, parent: ModelName, moves: list[tuple[AliasName, int, Etag | None]]
) -> list[Alias]:
    model = await share_lock_model(conn, parent)
    return [await write_alias(conn, model, n, v, e) for n, v, e in moves]


def _aliases_with_targets() -> Any:
    """Alias rows joined to their model and with their target's number."""
    return (
        select(aliases, V.version.label("target_version"))
        .join(models, M.id == A.model_id)
        .join(model_versions, V.id == A.version_id)
    )


async def get_alias(conn: AsyncConnection, name: AliasName) -> Alias:
    query = _aliases_with_targets().where(M.name == name.model, A.name == name.alias)
    row = (await conn.execute(query)).one_or_none()
    if row is None:
        raise errors.alias_not_found(str(name))
    return to_alias(row, name.model, name.alias, row.target_version)


async def list_aliases(
    conn: AsyncConnection, parent: ModelName, after: str | None, limit: int
) -> Page[Alias]:
    stmt = _aliases_with_targets().where(M.name == parent.model)
    if after is not None:
        stmt = stmt.where(A.name > after)
    rows = await rows_under(conn, parent, stmt.order_by(A.name).limit(limit + 1))
    items = [to_alias(r, parent.model, r.name, r.target_version) for r in rows[:limit]]
    return Page(items, more=len(rows) > limit)


async def delete_alias(conn: AsyncConnection, name: AliasName, etag: Etag | None) -> None:
    owner = await model_id(conn, name.parent)
    rollout = await running_rollout(conn, owner, name.alias)
    if rollout is not None:
        raise errors.FailedPrecondition(
            ErrorReason.ROLLOUT_IN_PROGRESS,
            f"{name} is being rolled out by {RolloutName(name.model, rollout)}",
            {ErrorMetadataKey.RESOURCE: str(name)},
        )
    stmt = delete(aliases).where(A.model_id == owner, A.name == name.alias)
    if etag is not None:
        stmt = stmt.where(A.id == etag.row_id, A.row_version == etag.row_version)
    deleted = (await conn.execute(stmt.returning(aliases))).one_or_none()
    if deleted is None:
        found = (
            await conn.execute(select(A.id).where(A.model_id == owner, A.name == name.alias))
        ).one_or_none()
        if found is None:
            raise errors.alias_not_found(str(name))
        raise errors.EtagMismatch(str(name))
    target = (await conn.execute(select(V.version).where(V.id == deleted.version_id))).scalar_one()
    old = to_alias(deleted, name.model, name.alias, target)
    await append_event(conn, EventType.ALIAS_DELETED, name.parent, str(name), old, None)
