"""Models in SQL (and the server-wide settings row): functions over a
connection, called by the store inside its transaction."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from modelregistry.v1.error_reasons import ErrorMetadataKey, ErrorReason
from sqlalchemy import delete, exists, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain import errors
from ..domain.etags import Etag
from ..domain.events import EventType
from ..domain.filters import Filter
from ..domain.names import AliasName, ModelName, VersionName
from ..domain.protection import check_protecting
from ..domain.resources import Model, ModelFields, Page
from .event_log import append_event
from .locks import lock_model
from .policies_sql import delete_model_policies
from .protection_sql import alias_targets
from .rows import filter_condition, to_alias, to_model, to_version
from .tables import A, M, V, aliases, model_versions, models, settings
from .transactions import dialect_insert, now_us


async def get_or_create_setting(
    conn: AsyncConnection, key: str, create: Callable[[], bytes]
) -> bytes:
    stmt = dialect_insert(conn, settings).values(key=key, value=create())
    await conn.execute(stmt.on_conflict_do_nothing(index_elements=["key"]))
    value: bytes = (
        await conn.execute(select(settings.c.value).where(settings.c.key == key))
    ).scalar_one()
    return value


async def create_model(conn: AsyncConnection, name: ModelName, fields: ModelFields) -> Model:
    now = now_us()
    stmt = (
        insert(models)
        .values(
            name=name.model,
            uid=str(uuid.uuid4()),
            display_name=fields.display_name,
            description=fields.description,
            labels=fields.labels,
            protected_aliases=list(fields.protected_aliases),
            separation_of_duties=fields.separation_of_duties,
            latest_version=0,
            row_version=1,
            create_time_us=now,
            update_time_us=now,
        )
        .returning(models)
    )
    try:
        model = to_model((await conn.execute(stmt)).one())
    except IntegrityError:
        raise errors.AlreadyExists(
            ErrorReason.MODEL_ALREADY_EXISTS,
            f"{name} already exists",
            {ErrorMetadataKey.RESOURCE: str(name)},
        ) from None
    await append_event(conn, EventType.MODEL_CREATED, name, str(name), None, model)
    return model


async def get_model(conn: AsyncConnection, name: ModelName) -> Model:
    row = (await conn.execute(select(models).where(M.name == name.model))).one_or_none()
    if row is None:
        raise errors.model_not_found(str(name))
    return to_model(row)


async def list_models(
    conn: AsyncConnection,
    flt: Filter,
    after: str | None,
    limit: int,
    only: frozenset[str] | None = None,
) -> Page[Model]:
    """`only`: the models the caller may see (None: all of them)."""
    if only is not None and not only:
        return Page([], more=False)
    stmt = select(models).where(filter_condition(models, flt))
    if only is not None:
        stmt = stmt.where(M.name.in_(sorted(only)))
    if after is not None:
        stmt = stmt.where(M.name > after)
    stmt = stmt.order_by(M.name).limit(limit + 1)
    rows = (await conn.execute(stmt)).all()
    return Page([to_model(r) for r in rows[:limit]], more=len(rows) > limit)


async def update_model(
    conn: AsyncConnection,
    name: ModelName,
    fields: ModelFields,
    paths: frozenset[str],
    etag: Etag | None,
) -> Model:
    values: dict[str, Any] = {p: getattr(fields, p) for p in paths}
    if "protected_aliases" in values:
        values["protected_aliases"] = list(fields.protected_aliases)
    current = await lock_model(conn, name, etag)
    if "protected_aliases" in paths:
        added = set(fields.protected_aliases) - set(current.protected_aliases or ())
        check_protecting(added, await alias_targets(conn, current.id, name.model, added))
    # Still conditional on the row version: the lock above makes the
    # check and the write one step, the WHERE keeps it honest.
    row = (
        await conn.execute(
            update(models)
            .where(M.id == current.id, M.row_version == current.row_version)
            .values(**values, row_version=M.row_version + 1, update_time_us=now_us())
            .returning(models)
        )
    ).one_or_none()
    if row is None:
        raise errors.EtagMismatch(str(name))
    model = to_model(row)
    await append_event(conn, EventType.MODEL_UPDATED, name, str(name), to_model(current), model)
    return model


async def delete_model(
    conn: AsyncConnection, name: ModelName, etag: Etag | None, force: bool
) -> None:
    row = await lock_model(conn, name, etag)
    if not force:
        has = (await conn.execute(select(exists().where(V.model_id == row.id)))).scalar_one()
        if has:
            raise errors.FailedPrecondition(
                ErrorReason.MODEL_HAS_VERSIONS,
                f"{name} still has versions; delete them first or use force",
                {ErrorMetadataKey.RESOURCE: str(name)},
            )
    gone_aliases = (
        await conn.execute(delete(aliases).where(A.model_id == row.id).returning(aliases))
    ).all()
    numbers = {
        r.id: r.version
        for r in await conn.execute(select(V.id, V.version).where(V.model_id == row.id))
    }
    for a in sorted(gone_aliases, key=lambda a: a.name):
        alias = to_alias(a, name.model, a.name, numbers[a.version_id])
        resource = str(AliasName(name.model, a.name))
        await append_event(conn, EventType.ALIAS_DELETED, name, resource, alias, None)
    gone_versions = (
        await conn.execute(
            delete(model_versions).where(V.model_id == row.id).returning(model_versions)
        )
    ).all()
    for v in sorted(gone_versions, key=lambda v: v.version):
        version = to_version(v, name.model)
        resource = str(VersionName(name.model, v.version))
        await append_event(conn, EventType.VERSION_DELETED, name, resource, version, None)
    await conn.execute(delete(models).where(M.id == row.id))
    await delete_model_policies(conn, name.model)
    await append_event(conn, EventType.MODEL_DELETED, name, str(name), to_model(row), None)
