"""Service-account tokens in SQL: functions over a connection.

Issuing and revoking are events (without the secret's hash), so every
replica drops a revoked token from its cache as soon as it reads the log.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from ..domain.access_errors import token_not_found
from ..domain.events import EventType
from ..domain.resources import Page
from ..domain.tokens import ServiceAccountToken
from .event_log import append_event
from .tables import SAT, service_account_tokens
from .transactions import now_us


def to_token(row: Row[Any]) -> ServiceAccountToken:
    return ServiceAccountToken(
        token_id=row.token_id,
        service_account=row.service_account,
        secret_hash=row.secret_hash,
        description=row.description,
        creator=row.creator,
        create_time_us=row.create_time_us,
        expire_time_us=row.expire_time_us,
        revoke_time_us=row.revoke_time_us,
    )


def as_event(token: ServiceAccountToken) -> dict[str, Any]:
    """What the log shows of a token: everything but the secret's hash."""
    return {
        "name": token.name,
        "service_account": token.service_account,
        "token_id": token.token_id,
        "description": token.description,
        "creator": token.creator,
        "create_time_us": token.create_time_us,
        "expire_time_us": token.expire_time_us,
        "revoke_time_us": token.revoke_time_us,
    }


async def insert_token(conn: AsyncConnection, token: ServiceAccountToken) -> ServiceAccountToken:
    row = (
        await conn.execute(
            insert(service_account_tokens)
            .values(
                token_id=token.token_id,
                service_account=token.service_account,
                secret_hash=token.secret_hash,
                description=token.description,
                creator=token.creator[:512],
                create_time_us=token.create_time_us,
                expire_time_us=token.expire_time_us,
                revoke_time_us=0,
            )
            .returning(service_account_tokens)
        )
    ).one()
    stored = to_token(row)
    await append_event(
        conn, EventType.SERVICE_ACCOUNT_TOKEN_CREATED, None, stored.name, None, as_event(stored)
    )
    return stored


async def get_token(conn: AsyncConnection, token_id: str) -> ServiceAccountToken | None:
    row = (
        await conn.execute(select(service_account_tokens).where(SAT.token_id == token_id))
    ).one_or_none()
    return to_token(row) if row is not None else None


async def list_tokens(
    conn: AsyncConnection,
    account: str,
    active_at_us: int | None,
    before_id: int | None,
    limit: int,
) -> tuple[Page[ServiceAccountToken], int | None]:
    stmt = select(service_account_tokens)
    if account:
        stmt = stmt.where(SAT.service_account == account)
    if active_at_us is not None:
        stmt = stmt.where(
            SAT.revoke_time_us == 0, or_(SAT.expire_time_us == 0, SAT.expire_time_us > active_at_us)
        )
    if before_id is not None:
        stmt = stmt.where(SAT.id < before_id)
    rows = (await conn.execute(stmt.order_by(SAT.id.desc()).limit(limit + 1))).all()
    more = len(rows) > limit
    page = Page([to_token(r) for r in rows[:limit]], more=more)
    return page, (rows[limit - 1].id if more else None)


async def revoke_token(conn: AsyncConnection, account: str, token_id: str) -> ServiceAccountToken:
    name = f"serviceAccounts/{account}/tokens/{token_id}"
    row = (
        await conn.execute(
            select(service_account_tokens)
            .where(SAT.token_id == token_id, SAT.service_account == account)
            .with_for_update()
        )
    ).one_or_none()
    if row is None:
        raise token_not_found(name)
    before = to_token(row)
    if before.revoke_time_us:
        return before
    updated = (
        await conn.execute(
            update(service_account_tokens)
            .where(SAT.id == row.id)
            .values(revoke_time_us=now_us())
            .returning(service_account_tokens)
        )
    ).one()
    after = to_token(updated)
    await append_event(
        conn,
        EventType.SERVICE_ACCOUNT_TOKEN_REVOKED,
        None,
        name,
        as_event(before),
        as_event(after),
    )
    return after
