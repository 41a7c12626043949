"""Policies and service-account tokens in SQL, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from modelregistry_server.domain.errors import Aborted, NotFound
from modelregistry_server.domain.etags import parse_etag
from modelregistry_server.domain.permissions import Role
from modelregistry_server.domain.policies import REGISTRY, Binding, PolicyResource
from modelregistry_server.domain.tokens import ServiceAccountToken
from modelregistry_server.store import migrate, policies_sql, tokens_sql
from modelregistry_server.store.engine import make_engine
from modelregistry_server.store.tables import events, models
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

FRAUD = PolicyResource("fraud")


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(db_url)
    await migrate.upgrade(engine)
    async with engine.begin() as conn:
        await conn.execute(
            insert(models).values(
                name="fraud",
                uid="u-1",
                display_name="",
                description="",
                labels={},
                latest_version=0,
                row_version=1,
                create_time_us=1,
                update_time_us=1,
            )
        )
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_policies_round_trip_conditionally(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        empty = await policies_sql.get_policy(conn, FRAUD)
    assert empty.bindings == () and empty.etag == "0-0"
    viewers = (Binding(Role.VIEWER, ("user:a", "user:b")),)
    async with engine.begin() as conn:
        first = await policies_sql.write_policy(conn, FRAUD, viewers, parse_etag(empty.etag))
    assert first.bindings == viewers
    with pytest.raises(Aborted):  # a second writer with the stale etag loses
        async with engine.begin() as conn:
            await policies_sql.write_policy(conn, FRAUD, (), parse_etag(empty.etag))
    owners = (Binding(Role.OWNER, ("user:c",)),)
    async with engine.begin() as conn:
        second = await policies_sql.write_policy(conn, FRAUD, owners, parse_etag(first.etag))
        await policies_sql.write_policy(conn, REGISTRY, viewers, None)
        found = await policies_sql.read_policies(conn, [REGISTRY, FRAUD, PolicyResource("x")])
        grants = await policies_sql.member_grants(conn, ["user:a", "user:c"])
        assert await policies_sql.policy_resources(conn) == {REGISTRY, FRAUD}
        logged = (await conn.execute(select(events.c.type, events.c.model))).all()
    assert found[FRAUD] == second and set(found) == {REGISTRY, FRAUD}
    assert sorted(grants) == sorted([(REGISTRY, Role.VIEWER), (FRAUD, Role.OWNER)])
    assert [tuple(r) for r in logged] == [
        ("POLICY_SET", "models/fraud"),
        ("POLICY_SET", "models/fraud"),
        ("POLICY_SET", ""),
    ]


async def test_policies_need_their_model(engine: AsyncEngine) -> None:
    with pytest.raises(NotFound):
        async with engine.begin() as conn:
            await policies_sql.get_policy(conn, PolicyResource("nope", "production"))
    with pytest.raises(NotFound):
        async with engine.begin() as conn:
            await policies_sql.write_policy(conn, PolicyResource("nope"), (), None)
    async with engine.begin() as conn:
        await policies_sql.write_policy(
            conn,
            PolicyResource("fraud", "production"),
            (Binding(Role.DEPLOYER, ("user:d",)),),
            None,
        )
        await policies_sql.delete_model_policies(conn, "fraud")
        assert await policies_sql.member_grants(conn, ["user:d"]) == []


async def test_tokens(engine: AsyncEngine) -> None:
    token = ServiceAccountToken("0123456789abcdef", "ci", "h" * 64, "deploys", "user:root", 5, 0, 0)
    other = ServiceAccountToken("fedcba9876543210", "bot", "g" * 64, "", "user:root", 6, 7, 0)
    async with engine.begin() as conn:
        await tokens_sql.insert_token(conn, token)
        await tokens_sql.insert_token(conn, other)
        assert await tokens_sql.get_token(conn, token.token_id) == token
        page, cursor = await tokens_sql.list_tokens(conn, "", None, None, 1)
        assert [t.token_id for t in page.items] == [other.token_id] and cursor is not None
        page, cursor = await tokens_sql.list_tokens(conn, "", None, cursor, 1)
        assert [t.token_id for t in page.items] == [token.token_id] and cursor is None
        active, _ = await tokens_sql.list_tokens(conn, "", 10, None, 10)
        assert [t.token_id for t in active.items] == [token.token_id]  # `other` expired at 7
        revoked = await tokens_sql.revoke_token(conn, "ci", token.token_id)
        assert revoked.revoke_time_us > 0
        again = await tokens_sql.revoke_token(conn, "ci", token.token_id)
        assert again == revoked
        with pytest.raises(NotFound):
            await tokens_sql.revoke_token(conn, "bot", token.token_id)
        logged = (await conn.execute(select(events.c.after_json))).scalars().all()
    assert len(logged) == 3
    assert all("h" * 64 not in text for text in logged)
