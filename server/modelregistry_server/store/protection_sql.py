"""Reads behind the approval gate (domain.protection): functions over a
connection, run inside the write transaction they guard, after the model
row is locked."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select, union
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain.names import VersionName
from .locks import RUNNING
from .tables import A, R, V, aliases, model_versions


async def alias_targets(
    conn: AsyncConnection, model_id: int, model: str, names: Iterable[str]
) -> dict[str, tuple[str, str]]:
    """alias -> (version name, approval state), for those of `names` that exist."""
    wanted = sorted(set(names))
    if not wanted:
        return {}
    rows = await conn.execute(
        select(A.name, V.version, V.approval_state)
        .select_from(aliases.join(model_versions, A.version_id == V.id))
        .where(A.model_id == model_id, A.name.in_(wanted))
    )
    return {r.name: (str(VersionName(model, r.version)), r.approval_state) for r in rows}


async def protected_aliases_at(
    conn: AsyncConnection, model_id: int, protected: Iterable[str], version_id: int
) -> list[str]:
    """The protected aliases that point at the version, or whose running
    rollout is moving them to it."""
    wanted = sorted(set(protected))
    if not wanted:
        return []
    pointing = select(A.name.label("alias")).where(
        A.model_id == model_id, A.version_id == version_id, A.name.in_(wanted)
    )
    rolling = select(R.alias.label("alias")).where(
        R.model_id == model_id,
        R.candidate_version_id == version_id,
        R.state.in_(RUNNING),
        R.alias.in_(wanted),
    )
    rows = await conn.execute(union(pointing, rolling))
    return sorted(r.alias for r in rows)
