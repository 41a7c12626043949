"""The registry store on SQLAlchemy Core: PostgreSQL in production, SQLite embedded.

Conditional writes are conditional UPDATEs (`WHERE id = ? AND row_version = ?`),
never read-modify-write in Python. Version numbers come from a counter on the
model row, incremented under that row's lock, so concurrent creates never
collide and numbers are never reused.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from opentelemetry import trace
from sqlalchemy import delete, exists, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..domain import errors
from ..domain.etags import Etag
from ..domain.filters import Filter
from ..domain.names import AliasName, ModelName, VersionName
from ..domain.resources import (
    Alias,
    Model,
    ModelFields,
    ModelVersion,
    Page,
    VersionFields,
    VersionState,
)
from ..domain.rules import check_state_transition, version_has_aliases, version_not_ready
from .engine import WRITE_OPTION
from .rows import filter_condition, to_alias, to_model, to_version
from .tables import aliases, model_versions, models, settings

M, V, A = models.c, model_versions.c, aliases.c
_tracer = trace.get_tracer("modelreg.store")


def _now_us() -> int:
    return time.time_ns() // 1000


def _failed(span: trace.Span, exc: BaseException) -> None:
    if span.is_recording():
        span.record_exception(exc)
        span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))


class SqlRegistryStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name

    @asynccontextmanager
    async def _tx(self, op: str, write: bool = False) -> AsyncIterator[AsyncConnection]:
        """One transaction, traced as a client span named after the store
        operation (a no-op span unless an exporter is configured). Domain
        errors raised inside are outcomes, not span failures."""
        with _tracer.start_as_current_span(
            f"store.{op}",
            kind=trace.SpanKind.CLIENT,
            attributes={"db.system": self._dialect, "db.operation.name": op},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                async with self._engine.connect() as conn:
                    if write and self._dialect == "sqlite":
                        conn = await conn.execution_options(**{WRITE_OPTION: True})
                    async with conn.begin():
                        yield conn
            except errors.DomainError:
                raise
            except (OperationalError, PoolTimeout, OSError) as exc:
                _failed(span, exc)
                raise errors.Unavailable(
                    "STORAGE_UNAVAILABLE", "the database is unavailable; retry with backoff"
                ) from exc
            except DBAPIError as exc:
                _failed(span, exc)
                if exc.connection_invalidated:
                    raise errors.Unavailable(
                        "STORAGE_UNAVAILABLE", "the database connection was lost; retry"
                    ) from exc
                raise
            except Exception as exc:
                _failed(span, exc)
                raise

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def ping(self) -> None:
        """Raise unless the database answers. Not traced: health calls it every
        few seconds, and a root span each time would drown real traces."""
        async with self._engine.connect() as conn:
            await conn.execute(select(1))

    async def close(self) -> None:
        await self._engine.dispose()

    def _insert(self, table: Any) -> Any:
        return (postgresql if self._dialect == "postgresql" else sqlite).insert(table)

    async def get_or_create_setting(self, key: str, create: Callable[[], bytes]) -> bytes:
        async with self._tx("get_or_create_setting", write=True) as conn:
            stmt = self._insert(settings).values(key=key, value=create())
            await conn.execute(stmt.on_conflict_do_nothing(index_elements=["key"]))
            value: bytes = (
                await conn.execute(select(settings.c.value).where(settings.c.key == key))
            ).scalar_one()
            return value

    # -- models ---------------------------------------------------------------

    async def create_model(self, name: ModelName, fields: ModelFields) -> Model:
        now = _now_us()
        stmt = (
            insert(models)
            .values(
                name=name.model,
                uid=str(uuid.uuid4()),
                display_name=fields.display_name,
                description=fields.description,
                labels=fields.labels,
                latest_version=0,
                row_version=1,
                create_time_us=now,
                update_time_us=now,
            )
            .returning(models)
        )
        try:
            async with self._tx("create_model", write=True) as conn:
                row = (await conn.execute(stmt)).one()
        except IntegrityError:
            raise errors.AlreadyExists(
                "MODEL_ALREADY_EXISTS", f"{name} already exists", {"resource": str(name)}
            ) from None
        return to_model(row)

    async def get_model(self, name: ModelName) -> Model:
        async with self._tx("get_model") as conn:
            row = (await conn.execute(select(models).where(M.name == name.model))).one_or_none()
        if row is None:
            raise errors.model_not_found(str(name))
        return to_model(row)

    async def list_models(self, flt: Filter, after: str | None, limit: int) -> Page[Model]:
        stmt = select(models).where(filter_condition(models, flt))
        if after is not None:
            stmt = stmt.where(M.name > after)
        stmt = stmt.order_by(M.name).limit(limit + 1)
        async with self._tx("list_models") as conn:
            rows = (await conn.execute(stmt)).all()
        return Page([to_model(r) for r in rows[:limit]], more=len(rows) > limit)

    async def update_model(
        self, name: ModelName, fields: ModelFields, paths: frozenset[str], etag: Etag | None
    ) -> Model:
        values: dict[str, Any] = {p: getattr(fields, p) for p in paths}
        stmt = update(models).where(M.name == name.model)
        if etag is not None:
            stmt = stmt.where(M.id == etag.row_id, M.row_version == etag.row_version)
        stmt = stmt.values(
            **values, row_version=M.row_version + 1, update_time_us=_now_us()
        ).returning(models)
        async with self._tx("update_model", write=True) as conn:
            row = (await conn.execute(stmt)).one_or_none()
            if row is None:
                await self._model_id(conn, name)  # NOT_FOUND if it is gone
                raise errors.EtagMismatch(str(name))
        return to_model(row)

    async def delete_model(self, name: ModelName, etag: Etag | None, force: bool) -> None:
        async with self._tx("delete_model", write=True) as conn:
            row = (
                await conn.execute(
                    select(M.id, M.row_version).where(M.name == name.model).with_for_update()
                )
            ).one_or_none()
            if row is None:
                raise errors.model_not_found(str(name))
            if etag is not None and (row.id, row.row_version) != (etag.row_id, etag.row_version):
                raise errors.EtagMismatch(str(name))
            if not force:
                has = (
                    await conn.execute(select(exists().where(V.model_id == row.id)))
                ).scalar_one()
                if has:
                    raise errors.FailedPrecondition(
                        "MODEL_HAS_VERSIONS",
                        f"{name} still has versions; delete them first or use force",
                        {"resource": str(name)},
                    )
            await conn.execute(delete(aliases).where(A.model_id == row.id))
            await conn.execute(delete(model_versions).where(V.model_id == row.id))
            await conn.execute(delete(models).where(M.id == row.id))

    async def _model_id(self, conn: AsyncConnection, name: ModelName) -> int:
        model_id = (await conn.execute(select(M.id).where(M.name == name.model))).scalar()
        if model_id is None:
            raise errors.model_not_found(str(name))
        return int(model_id)

    # -- versions -------------------------------------------------------------

    async def create_version(self, parent: ModelName, fields: VersionFields) -> ModelVersion:
        now = _now_us()
        state = fields.state or VersionState.PENDING_UPLOAD
        async with self._tx("create_version", write=True) as conn:
            counter = (
                await conn.execute(
                    update(models)
                    .where(M.name == parent.model)
                    .values(latest_version=M.latest_version + 1)
                    .returning(M.id, M.latest_version)
                )
            ).one_or_none()
            if counter is None:
                raise errors.model_not_found(str(parent))
            row = (
                await conn.execute(
                    insert(model_versions)
                    .values(
                        model_id=counter.id,
                        version=counter.latest_version,
                        uid=str(uuid.uuid4()),
                        state=state.value,
                        source_uri=fields.source_uri,
                        description=fields.description,
                        labels=fields.labels,
                        metadata=fields.metadata,
                        row_version=1,
                        create_time_us=now,
                        update_time_us=now,
                    )
                    .returning(model_versions)
                )
            ).one()
        return to_version(row, parent.model)

    def _version_query(self, name: VersionName) -> Any:
        return (
            select(model_versions)
            .join(models, M.id == V.model_id)
            .where(M.name == name.model, V.version == name.version)
        )

    async def get_version(self, name: VersionName) -> ModelVersion:
        async with self._tx("get_version") as conn:
            row = (await conn.execute(self._version_query(name))).one_or_none()
        if row is None:
            raise errors.version_not_found(str(name))
        return to_version(row, name.model)

    async def list_versions(
        self, parent: ModelName, flt: Filter, before: int | None, limit: int
    ) -> Page[ModelVersion]:
        stmt = (
            select(model_versions)
            .join(models, M.id == V.model_id)
            .where(M.name == parent.model, filter_condition(model_versions, flt))
        )
        if before is not None:
            stmt = stmt.where(V.version < before)
        stmt = stmt.order_by(V.version.desc()).limit(limit + 1)
        async with self._tx("list_versions") as conn:
            rows = (await conn.execute(stmt)).all()
            if not rows:
                await self._model_id(conn, parent)
        return Page([to_version(r, parent.model) for r in rows[:limit]], more=len(rows) > limit)

    async def _lock_version(
        self, conn: AsyncConnection, name: VersionName, etag: Etag | None
    ) -> Any:
        row = (
            await conn.execute(self._version_query(name).with_for_update(of=model_versions))
        ).one_or_none()
        if row is None:
            raise errors.version_not_found(str(name))
        if etag is not None and (row.id, row.row_version) != (etag.row_id, etag.row_version):
            raise errors.EtagMismatch(str(name))
        return row

    async def _aliases_of(self, conn: AsyncConnection, version_id: int) -> list[str]:
        rows = await conn.execute(select(A.name).where(A.version_id == version_id))
        return [r.name for r in rows]

    async def update_version(
        self, name: VersionName, fields: VersionFields, paths: frozenset[str], etag: Etag | None
    ) -> ModelVersion:
        async with self._tx("update_version", write=True) as conn:
            current = await self._lock_version(conn, name, etag)
            values: dict[str, Any] = {p: getattr(fields, p) for p in paths if p != "state"}
            if "state" in paths and fields.state is not None:
                check_state_transition(str(name), VersionState(current.state), fields.state)
                if fields.state == VersionState.ARCHIVED:
                    targets = await self._aliases_of(conn, current.id)
                    if targets:
                        raise version_has_aliases(str(name), targets)
                values["state"] = fields.state.value
            row = (
                await conn.execute(
                    update(model_versions)
                    .where(V.id == current.id)
                    .values(**values, row_version=V.row_version + 1, update_time_us=_now_us())
                    .returning(model_versions)
                )
            ).one()
        return to_version(row, name.model)

    async def delete_version(self, name: VersionName, etag: Etag | None, force: bool) -> None:
        async with self._tx("delete_version", write=True) as conn:
            current = await self._lock_version(conn, name, etag)
            targets = await self._aliases_of(conn, current.id)
            if targets and not force:
                raise version_has_aliases(str(name), targets)
            await conn.execute(delete(aliases).where(A.version_id == current.id))
            await conn.execute(delete(model_versions).where(V.id == current.id))

    # -- aliases --------------------------------------------------------------

    async def set_alias(self, name: AliasName, version: int, etag: Etag | None) -> Alias:
        version_name = VersionName(name.model, version)
        now = _now_us()
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
        return to_alias(row, name.model, name.alias, version)

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
            deleted = (await conn.execute(stmt.returning(A.id))).one_or_none()
            if deleted is None:
                found = (
                    await conn.execute(
                        select(A.id).where(A.model_id == model_id, A.name == name.alias)
                    )
                ).one_or_none()
                if found is None:
                    raise errors.alias_not_found(str(name))
                raise errors.EtagMismatch(str(name))

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
