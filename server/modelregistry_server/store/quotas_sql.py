"""Storage usage and the limits an upload must pass before it starts.

Usage of a model: the bytes of the unique blobs its versions reference
(`blob_refs`, a blob shared by two of its versions counted once) plus the
declared sizes of its unexpired uploads. The upload check runs inside the
transaction that creates the upload row, after locking the model row, so
concurrent starts on one model are counted one after the other.
"""

from __future__ import annotations

from modelregistry.v1.error_reasons import ErrorMetadataKey, ErrorReason
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain import errors
from ..domain.names import ModelName, VersionName
from ..domain.quotas import StorageUsage, UploadLimits
from .tables import BR, M, U, V, blob_refs, model_versions, models
from .transactions import SqlBase, now_us


async def model_usage(conn: AsyncConnection, model_id: int, now: int) -> int:
    unique = (
        select(BR.digest, func.max(BR.size_bytes).label("size"))
        .select_from(blob_refs.join(model_versions, BR.model_version_id == V.id))
        .where(V.model_id == model_id)
        .group_by(BR.digest)
        .subquery()
    )
    stored = (await conn.execute(select(func.coalesce(func.sum(unique.c.size), 0)))).scalar_one()
    open_uploads = (
        await conn.execute(
            select(func.coalesce(func.sum(U.size_bytes), 0)).where(
                U.model_id == model_id, U.expire_time_us > now
            )
        )
    ).scalar_one()
    return int(stored) + int(open_uploads)


async def _model_of(
    conn: AsyncConnection, version: VersionName | None, model: ModelName | None
) -> int | None:
    if version is not None:
        query = (
            select(V.model_id)
            .join(models, M.id == V.model_id)
            .where(M.name == version.model, V.version == version.version)
        )
        found = (await conn.execute(query)).scalar_one_or_none()
        if found is None:
            raise errors.version_not_found(str(version))
        return int(found)
    if model is not None:
        found = (await conn.execute(select(M.id).where(M.name == model.model))).scalar_one_or_none()
        if found is None:
            raise errors.model_not_found(str(model))
        return int(found)
    return None


async def check_upload_limits(
    conn: AsyncConnection,
    *,
    version: VersionName | None,
    model: ModelName | None,
    principal: str,
    size_bytes: int,
    digest: str | None,
    limits: UploadLimits,
) -> int | None:
    """Refuse an upload the caller or the model has no room for; return the
    id of the model it counts against."""
    now = now_us()
    cap = limits.max_open_uploads_per_principal
    if cap and principal:
        open_count = (
            await conn.execute(
                select(func.count()).where(U.principal == principal, U.expire_time_us > now)
            )
        ).scalar_one()
        if open_count >= cap:
            raise errors.ResourceExhausted(
                ErrorReason.TOO_MANY_OPEN_UPLOADS,
                f"{principal} already has {open_count} open uploads (at most {cap});"
                " finish or cancel one first",
                {ErrorMetadataKey.PRINCIPAL: principal, ErrorMetadataKey.LIMIT: str(cap)},
            )
    model_id = await _model_of(conn, version, model)
    if model_id is None:
        return None
    row = (
        await conn.execute(
            select(M.name, M.storage_quota_bytes).where(M.id == model_id).with_for_update()
        )
    ).one()
    limit = limits.limit(row.storage_quota_bytes)
    if not limit:
        return model_id
    if digest is not None:
        shared = await conn.execute(
            select(BR.digest)
            .join(model_versions, BR.model_version_id == V.id)
            .where(V.model_id == model_id, BR.digest == digest)
            .limit(1)
        )
        if shared.first() is not None:
            return model_id  # already counted: the model stores it once
    used = await model_usage(conn, model_id, now)
    if used + size_bytes > limit:
        raise errors.ResourceExhausted(
            ErrorReason.QUOTA_EXCEEDED,
            f"models/{row.name} stores {used} bytes of its quota of {limit};"
            f" {size_bytes} more do not fit",
            {
                ErrorMetadataKey.RESOURCE: f"models/{row.name}",
                ErrorMetadataKey.LIMIT: str(limit),
                ErrorMetadataKey.SIZE: str(size_bytes),
                ErrorMetadataKey.USED_BYTES: str(used),
            },
        )
    return model_id


class SqlQuotaStore(SqlBase):
    async def storage(self, name: ModelName, limits: UploadLimits) -> StorageUsage:
        async with self._tx("model_storage") as conn:
            row = (
                await conn.execute(select(M.id, M.storage_quota_bytes).where(M.name == name.model))
            ).one_or_none()
            if row is None:
                raise errors.model_not_found(str(name))
            used = await model_usage(conn, row.id, now_us())
        return StorageUsage(limits.limit(row.storage_quota_bytes), used)
