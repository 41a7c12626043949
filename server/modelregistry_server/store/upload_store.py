"""Upload sessions in SQL, and the one transaction that publishes an artifact.

Finishing an upload that targets a version sets the version's artifact and
makes it READY in the same transaction that deletes the upload row, so a
crash leaves either a resumable upload or a READY version, never both or
neither.
"""

from __future__ import annotations

from typing import Any

from modelregistry.v1.error_reasons import ErrorMetadataKey, ErrorReason
from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain import errors
from ..domain.events import EventType
from ..domain.names import ModelName, VersionName
from ..domain.quotas import UploadLimits
from ..domain.resources import Artifact, ModelVersion, UploadRecord, VersionState
from .access_lookups_sql import add_blob_refs
from .event_log import append_event
from .gc_sql import check_claims
from .quotas_sql import check_upload_limits
from .rows import to_version
from .tables import M, U, V, model_versions, models, uploads
from .transactions import SqlBase, now_us

NO_LIMITS = UploadLimits()


def version_not_pending(name: VersionName, state: str) -> errors.FailedPrecondition:
    return errors.FailedPrecondition(
        ErrorReason.VERSION_NOT_PENDING,
        f"{name} is {state}: its artifact is already set",
        {ErrorMetadataKey.RESOURCE: str(name), ErrorMetadataKey.STATE: state},
    )


class SqlUploadStore(SqlBase):
    async def _pending_version_id(
        self, conn: AsyncConnection, name: VersionName, lock: bool
    ) -> int:
        query = (
            select(V.id, V.state)
            .join(models, M.id == V.model_id)
            .where(M.name == name.model, V.version == name.version)
        )
        if lock:
            query = query.with_for_update(of=model_versions)
        row = (await conn.execute(query)).one_or_none()
        if row is None:
            raise errors.version_not_found(str(name))
        if row.state != VersionState.PENDING_UPLOAD.value:
            raise version_not_pending(name, row.state)
        return int(row.id)

    async def create_upload(
        self,
        upload_id: str,
        version: VersionName | None,
        size_bytes: int,
        digest: str | None,
        media_type: str,
        ttl_us: int,
        *,
        model: ModelName | None = None,
        principal: str = "",
        limits: UploadLimits = NO_LIMITS,
    ) -> UploadRecord:
        now = now_us()
        async with self._tx("create_upload", write=True) as conn:
            version_id = None
            if version is not None:
                version_id = await self._pending_version_id(conn, version, lock=False)
            model_id = await check_upload_limits(
                conn,
                version=version,
                model=None if version is not None else model,
                principal=principal,
                size_bytes=size_bytes,
                digest=digest,
                limits=limits,
            )
            await conn.execute(
                insert(uploads).values(
                    id=upload_id,
                    model_version_id=version_id,
                    size_bytes=size_bytes,
                    digest=digest,
                    media_type=media_type,
                    create_time_us=now,
                    update_time_us=now,
                    expire_time_us=now + ttl_us,
                    model_id=model_id,
                    principal=principal,
                )
            )
        return UploadRecord(
            upload_id, version, size_bytes, digest, media_type, now, now, now + ttl_us
        )

    async def get_upload(self, upload_id: str) -> UploadRecord:
        query = (
            select(uploads, M.name.label("model_name"), V.version.label("version_number"))
            .outerjoin(model_versions, V.id == U.model_version_id)
            .outerjoin(models, M.id == V.model_id)
            .where(U.id == upload_id, U.expire_time_us > now_us())
        )
        async with self._tx("get_upload") as conn:
            row = (await conn.execute(query)).one_or_none()
        if row is None:
            raise errors.upload_not_found(upload_id)
        return _to_record(row)

    async def touch_upload(self, upload_id: str, ttl_us: int) -> None:
        """Progress extends the deadline: only idle uploads expire."""
        now = now_us()
        async with self._tx("touch_upload", write=True) as conn:
            await conn.execute(
                update(uploads)
                .where(U.id == upload_id)
                .values(update_time_us=now, expire_time_us=now + ttl_us)
            )

    async def finish_upload(
        self,
        upload_id: str,
        artifact: Artifact,
        files: tuple[tuple[str, int], ...] = (),
        hold_deadline_us: int | None = None,
    ) -> ModelVersion | None:
        async with self._tx("finish_upload", write=True) as conn:
            record = (
                await conn.execute(select(uploads).where(U.id == upload_id).with_for_update())
            ).one_or_none()
            if record is None:
                raise errors.upload_not_found(upload_id)
            await conn.execute(delete(uploads).where(U.id == upload_id))
            if record.model_version_id is None:
                return None
            target = (
                await conn.execute(
                    select(V.id, V.state, V.version, M.name)
                    .join(models, M.id == V.model_id)
                    .where(V.id == record.model_version_id)
                    .with_for_update(of=model_versions)
                )
            ).one()
            name = VersionName(target.name, target.version)
            if target.state != VersionState.PENDING_UPLOAD.value:
                raise version_not_pending(name, target.state)
            row = (
                await conn.execute(
                    update(model_versions)
                    .where(V.id == target.id)
                    .values(
                        state=VersionState.READY.value,
                        artifact_digest=artifact.digest,
                        artifact_size=artifact.size_bytes,
                        artifact_chunk_size=artifact.chunk_size_bytes,
                        artifact_media_type=artifact.media_type,
                        row_version=V.row_version + 1,
                        update_time_us=now_us(),
                    )
                    .returning(model_versions)
                )
            ).one()
            version = to_version(row, name.model)
            if hold_deadline_us is not None:
                await check_claims(
                    conn, (artifact.digest, *(d for d, _ in files)), hold_deadline_us
                )
            await add_blob_refs(conn, target.id, ((artifact.digest, artifact.size_bytes), *files))
            await append_event(conn, EventType.VERSION_READY, name.parent, str(name), None, version)
        return version

    async def delete_upload(self, upload_id: str) -> bool:
        async with self._tx("delete_upload", write=True) as conn:
            gone = await conn.execute(delete(uploads).where(U.id == upload_id).returning(U.id))
            return gone.one_or_none() is not None

    async def expired_uploads(self, limit: int = 100) -> list[str]:
        async with self._tx("expired_uploads") as conn:
            rows = await conn.execute(select(U.id).where(U.expire_time_us <= now_us()).limit(limit))
            return [r.id for r in rows]


def _to_record(row: Row[Any]) -> UploadRecord:
    version = None
    if row.model_name is not None:
        version = VersionName(row.model_name, row.version_number)
    return UploadRecord(
        upload_id=row.id,
        version=version,
        size_bytes=row.size_bytes,
        digest=row.digest,
        media_type=row.media_type,
        create_time_us=row.create_time_us,
        update_time_us=row.update_time_us,
        expire_time_us=row.expire_time_us,
    )
