"""The few reads access control needs before a request runs, and the blob
references that make downloads by digest checkable: functions over a
connection.

Each lookup answers "which model or alias does this request touch" for
requests that name something else (a rollout, an upload id, a digest).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain.names import AliasName, RolloutName, VersionName
from .gc_sql import add_sized_refs
from .tables import BR, M, R, U, V, blob_refs, model_versions, models, rollouts, uploads


async def rollout_alias(conn: AsyncConnection, name: RolloutName) -> AliasName | None:
    alias = (
        await conn.execute(
            select(R.alias)
            .select_from(rollouts.join(models, R.model_id == M.id))
            .where(M.name == name.model, R.rollout_id == name.rollout)
        )
    ).scalar()
    return AliasName(name.model, alias) if alias is not None else None


async def upload_version(conn: AsyncConnection, upload_id: str) -> tuple[bool, VersionName | None]:
    row = (
        await conn.execute(
            select(U.id, M.name, V.version)
            .select_from(
                uploads.outerjoin(model_versions, U.model_version_id == V.id).outerjoin(
                    models, V.model_id == M.id
                )
            )
            .where(U.id == upload_id)
        )
    ).one_or_none()
    if row is None:
        return False, None
    if row.name is None:
        return True, None
    return True, VersionName(row.name, row.version)


async def blob_models(conn: AsyncConnection, digest: str) -> frozenset[str]:
    rows = await conn.execute(
        select(M.name)
        .distinct()
        .select_from(
            blob_refs.join(model_versions, BR.model_version_id == V.id).join(
                models, V.model_id == M.id
            )
        )
        .where(BR.digest == digest)
    )
    return frozenset(rows.scalars().all())


async def add_blob_refs(
    conn: AsyncConnection, version_id: int, refs: Iterable[tuple[str, int]]
) -> None:
    """Record that a version references these blobs (its manifest and files),
    each as (digest, size)."""
    await add_sized_refs(conn, version_id, refs)
