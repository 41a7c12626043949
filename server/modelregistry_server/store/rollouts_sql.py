"""Rollouts in SQL, and alias resolution (which reports the running rollout):
functions over a connection, called by the store inside its transaction.

A rollout row is locked for every change and changed with a conditional
UPDATE; the partial unique index on (model, alias) for running rollouts
makes "one active rollout per alias" hold even between two replicas.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from modelregistry.v1.error_reasons import ErrorMetadataKey, ErrorReason
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased

from ..domain import errors
from ..domain.etags import Etag
from ..domain.events import EventType
from ..domain.names import AliasName, ModelName, RolloutName, VersionName
from ..domain.resources import Alias, Page, Resolution, Rollout, RolloutState
from ..domain.rollouts import check_pause, check_resume, check_rollback, next_percent
from .aliases_sql import ready_target, write_alias
from .event_log import append_event
from .locks import RUNNING, rows_under, running_rollout, share_lock_model
from .rows import to_rollout, to_version
from .tables import A, M, R, V, aliases, event_log_head, model_versions, models, rollouts
from .transactions import now_us

Stable = aliased(model_versions, name="stable")
Candidate = aliased(model_versions, name="candidate")


def rollout_not_found(name: RolloutName) -> errors.NotFound:
    return errors.NotFound(
        ErrorReason.ROLLOUT_NOT_FOUND,
        f"rollout {name} not found",
        {ErrorMetadataKey.RESOURCE: str(name)},
    )


def _rollout_query() -> Any:
    return (
        select(
            rollouts,
            M.name.label("model_name"),
            Stable.c.version.label("stable_number"),
            Candidate.c.version.label("candidate_number"),
        )
        .join(models, M.id == R.model_id)
        .join(Stable, Stable.c.id == R.stable_version_id)
        .join(Candidate, Candidate.c.id == R.candidate_version_id)
    )


def _to_rollout(row: Any) -> Rollout:
    return to_rollout(row, row.model_name, row.stable_number, row.candidate_number)


async def start_rollout(
    conn: AsyncConnection,
    alias: AliasName,
    candidate: VersionName,
    steps: tuple[int, ...],
    alias_etag: Etag | None,
) -> Rollout:
    model = await share_lock_model(conn, alias.parent)
    current = (
        await conn.execute(
            select(A.id, A.row_version, A.version_id, V.version)
            .join(model_versions, V.id == A.version_id)
            .where(A.model_id == model.id, A.name == alias.alias)
            .with_for_update(of=aliases)
        )
    ).one_or_none()
    if current is None:
        raise errors.alias_not_found(str(alias))
    if alias_etag is not None and (current.id, current.row_version) != (
        alias_etag.row_id,
        alias_etag.row_version,
    ):
        raise errors.EtagMismatch(str(alias))
    if current.version == candidate.version:
        raise errors.FailedPrecondition(
            ErrorReason.SAME_VERSION,
            f"{alias} already points at {candidate}",
            {ErrorMetadataKey.RESOURCE: str(alias)},
        )
    running = await running_rollout(conn, model.id, alias.alias)
    if running is not None:
        raise errors.FailedPrecondition(
            ErrorReason.ROLLOUT_IN_PROGRESS,
            f"{alias} is already being rolled out by {RolloutName(alias.model, running)}",
            {ErrorMetadataKey.RESOURCE: str(alias)},
        )
    target = await ready_target(conn, model, alias.alias, candidate)
    now = now_us()
    rollout_id = secrets.token_hex(6)
    try:
        row = (
            await conn.execute(
                insert(rollouts)
                .values(
                    model_id=model.id,
                    rollout_id=rollout_id,
                    alias=alias.alias,
                    stable_version_id=current.version_id,
                    candidate_version_id=target.id,
                    steps=list(steps),
                    percent=steps[0],
                    state=RolloutState.ACTIVE.value,
                    row_version=1,
                    create_time_us=now,
                    update_time_us=now,
                )
                .returning(rollouts)
            )
        ).one()
    except IntegrityError:  # a concurrent start won the partial unique index
        raise errors.FailedPrecondition(
            ErrorReason.ROLLOUT_IN_PROGRESS,
            f"{alias} is already being rolled out",
            {ErrorMetadataKey.RESOURCE: str(alias)},
        ) from None
    rollout = to_rollout(row, alias.model, current.version, candidate.version)
    await append_event(
        conn, EventType.ROLLOUT_STARTED, alias.parent, str(rollout.name), None, rollout
    )
    return rollout


async def get_rollout(conn: AsyncConnection, name: RolloutName) -> Rollout:
    row = (
        await conn.execute(
            _rollout_query().where(M.name == name.model, R.rollout_id == name.rollout)
        )
    ).one_or_none()
    if row is None:
        raise rollout_not_found(name)
    return _to_rollout(row)


async def list_rollouts(
    conn: AsyncConnection,
    parent: ModelName,
    active_only: bool,
    before_id: int | None,
    limit: int,
) -> tuple[Page[Rollout], int | None]:
    """Newest first; also returns the last row's id (the page cursor)."""
    stmt = _rollout_query().where(M.name == parent.model)
    if active_only:
        stmt = stmt.where(R.state.in_(RUNNING))
    if before_id is not None:
        stmt = stmt.where(R.id < before_id)
    rows = await rows_under(conn, parent, stmt.order_by(R.id.desc()).limit(limit + 1))
    page = Page([_to_rollout(r) for r in rows[:limit]], more=len(rows) > limit)
    return page, (rows[limit - 1].id if len(rows) > limit else None)


async def _lock_rollout(conn: AsyncConnection, name: RolloutName, etag: Etag | None) -> Any:
    row = (
        await conn.execute(
            _rollout_query()
            .where(M.name == name.model, R.rollout_id == name.rollout)
            .with_for_update(of=rollouts)
        )
    ).one_or_none()
    if row is None:
        raise rollout_not_found(name)
    if etag is not None and (row.id, row.row_version) != (etag.row_id, etag.row_version):
        raise errors.EtagMismatch(str(name))
    return row


async def _change_rollout(
    conn: AsyncConnection, row: Any, kind: EventType, **values: Any
) -> Rollout:
    before = _to_rollout(row)
    updated = (
        await conn.execute(
            update(rollouts)
            .where(R.id == row.id, R.row_version == row.row_version)
            .values(**values, row_version=R.row_version + 1, update_time_us=now_us())
            .returning(rollouts)
        )
    ).one()
    after = to_rollout(updated, row.model_name, row.stable_number, row.candidate_number)
    await append_event(conn, kind, ModelName(row.model_name), str(after.name), before, after)
    return after


async def advance_rollout(
    conn: AsyncConnection, name: RolloutName, etag: Etag | None, percent: int
) -> Rollout:
    row = await _lock_rollout(conn, name, etag)
    target = next_percent(_to_rollout(row), percent)
    if target < 100:
        return await _change_rollout(conn, row, EventType.ROLLOUT_ADVANCED, percent=target)
    # Completing: the alias moves to the candidate in the same commit.
    model = await share_lock_model(conn, name.parent)
    alias = AliasName(name.model, row.alias)
    await write_alias(conn, model, alias, row.candidate_number, None, via_rollout=True)
    return await _change_rollout(
        conn,
        row,
        EventType.ROLLOUT_COMPLETED,
        percent=100,
        state=RolloutState.COMPLETED.value,
    )


async def _checked_change(
    conn: AsyncConnection,
    name: RolloutName,
    etag: Etag | None,
    check: Callable[[Rollout], None],
    kind: EventType,
    **values: Any,
) -> Rollout:
    """Lock the rollout, let the domain rule `check` allow the change, make it."""
    row = await _lock_rollout(conn, name, etag)
    check(_to_rollout(row))
    return await _change_rollout(conn, row, kind, **values)


async def pause_rollout(conn: AsyncConnection, name: RolloutName, etag: Etag | None) -> Rollout:
    paused = RolloutState.PAUSED.value
    return await _checked_change(
        conn, name, etag, check_pause, EventType.ROLLOUT_PAUSED, state=paused
    )


async def resume_rollout(conn: AsyncConnection, name: RolloutName, etag: Etag | None) -> Rollout:
    active = RolloutState.ACTIVE.value
    return await _checked_change(
        conn, name, etag, check_resume, EventType.ROLLOUT_RESUMED, state=active
    )


async def rollback_rollout(conn: AsyncConnection, name: RolloutName, etag: Etag | None) -> Rollout:
    kind, rolled_back = EventType.ROLLOUT_ROLLED_BACK, RolloutState.ROLLED_BACK.value
    return await _checked_change(
        conn, name, etag, check_rollback, kind, percent=0, state=rolled_back
    )


async def resolve_alias(conn: AsyncConnection, name: AliasName) -> Resolution:
    """One query on the hot path; a second only while a rollout runs."""
    head = select(event_log_head.c.revision).scalar_subquery()
    stmt = (
        select(
            model_versions,
            A.id.label("alias_id"),
            A.row_version.label("alias_row_version"),
            A.create_time_us.label("alias_create_time_us"),
            A.update_time_us.label("alias_update_time_us"),
            A.model_id.label("alias_model_id"),
            R.rollout_id.label("running_rollout"),
            head.label("log_revision"),
        )
        .select_from(aliases)
        .join(models, M.id == A.model_id)
        .join(model_versions, V.id == A.version_id)
        .outerjoin(
            rollouts,
            (R.model_id == A.model_id) & (R.alias == A.name) & R.state.in_(RUNNING),
        )
        .where(M.name == name.model, A.name == name.alias)
    )
    row = (await conn.execute(stmt)).one_or_none()
    if row is None:
        raise errors.alias_not_found(str(name))
    rollout = candidate = None
    if row.running_rollout is not None:
        found = (
            await conn.execute(
                _rollout_query().where(
                    R.model_id == row.alias_model_id,
                    R.rollout_id == row.running_rollout,
                )
            )
        ).one()
        rollout = _to_rollout(found)
        cand = (
            await conn.execute(select(model_versions).where(V.id == found.candidate_version_id))
        ).one()
        candidate = to_version(cand, name.model)
    version = to_version(row, name.model)
    alias = Alias(
        name=name,
        version=version.name,
        create_time_us=row.alias_create_time_us,
        update_time_us=row.alias_update_time_us,
        etag=str(Etag(row.alias_id, row.alias_row_version)),
    )
    return Resolution(alias, version, rollout, candidate, int(row.log_revision))
