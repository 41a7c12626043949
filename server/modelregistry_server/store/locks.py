"""The model-row locks and lookups that every resource module takes.

The model row is the point of order for everything under a model: its
exclusive lock serializes updates and deletes of the model, an UPDATE of its
version counter hands out version numbers (the row lock makes concurrent
creates queue, so numbers never collide and are never reused), and its share
lock keeps the protected aliases still while an alias moves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain import errors
from ..domain.etags import Etag
from ..domain.names import ModelName
from ..domain.resources import RolloutState
from .tables import M, R, models

# Rollout states that hold an alias (at most one such rollout per alias).
RUNNING = (RolloutState.ACTIVE.value, RolloutState.PAUSED.value)


async def model_id(conn: AsyncConnection, name: ModelName) -> int:
    """The model's row id, without a lock (NOT_FOUND if there is none)."""
    found = (await conn.execute(select(M.id).where(M.name == name.model))).scalar()
    if found is None:
        raise errors.model_not_found(str(name))
    return int(found)


async def rows_under(conn: AsyncConnection, parent: ModelName, query: Any) -> Sequence[Row[Any]]:
    """The rows of a listing under `parent`; an empty listing is NOT_FOUND if
    the model itself is missing (a second query only then)."""
    rows = (await conn.execute(query)).all()
    if not rows:
        await model_id(conn, parent)
    return rows


async def lock_model(conn: AsyncConnection, name: ModelName, etag: Etag | None) -> Any:
    """The model row, locked for update, checked against `etag` if given."""
    row = (
        await conn.execute(select(models).where(M.name == name.model).with_for_update())
    ).one_or_none()
    if row is None:
        raise errors.model_not_found(str(name))
    if etag is not None and (row.id, row.row_version) != (etag.row_id, etag.row_version):
        raise errors.EtagMismatch(str(name))
    return row


async def share_lock_model(conn: AsyncConnection, parent: ModelName) -> Any:
    """The model row, share-locked so its protected aliases hold still."""
    row = (await conn.execute(_SHARE_LOCK_MODEL, {"p_name": parent.model})).one_or_none()
    if row is None:
        raise errors.model_not_found(str(parent))
    return row


_SHARE_LOCK_MODEL = (
    select(M.id, M.protected_aliases)
    .where(M.name == bindparam("p_name"))
    .with_for_update(read=True)
)


def bump_version_counter(model: Any) -> Any:
    """The UPDATE that hands out the next version number of the model named
    `model` (a value or a bound parameter): it takes the row lock, so
    concurrent creates queue; it returns (id, latest_version)."""
    return (
        update(models)
        .where(M.name == model)
        .values(latest_version=M.latest_version + 1)
        .returning(M.id, M.latest_version)
    )


async def next_version_number(conn: AsyncConnection, parent: ModelName) -> Any:
    """Bump the model's version counter: (id, latest_version)."""
    counter = (await conn.execute(bump_version_counter(parent.model))).one_or_none()
    if counter is None:
        raise errors.model_not_found(str(parent))
    return counter


async def running_rollout(conn: AsyncConnection, model: int, alias: str) -> str | None:
    """The id of the rollout that holds `alias` now, if any."""
    found = (
        await conn.execute(
            select(R.rollout_id).where(R.model_id == model, R.alias == alias, R.state.in_(RUNNING))
        )
    ).first()
    return None if found is None else str(found.rollout_id)
