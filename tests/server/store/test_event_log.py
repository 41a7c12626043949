"""The event log: every write appends an event in its transaction, in order,
hash-chained; compaction keeps what a queue still needs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from modelregistry_server.domain import errors
from modelregistry_server.domain.events import GENESIS_HASH, verify_chain
from modelregistry_server.domain.names import AliasName, ModelName
from modelregistry_server.domain.resources import ModelFields, VersionFields, VersionState
from modelregistry_server.events.compactor import compact_once
from modelregistry_server.store import migrate
from modelregistry_server.store.engine import make_engine
from modelregistry_server.store.event_log import SqlEventLog
from modelregistry_server.store.relay_cursors import SqlRelayCursors
from modelregistry_server.store.sqlalchemy_store import SqlRegistryStore
from modelregistry_server.store.tables import events
from sqlalchemy import text, update

FRAUD = ModelName("fraud")
READY = VersionFields(source_uri="s3://b/m", state=VersionState.READY)


@pytest.fixture
async def stores(db_url: str) -> AsyncIterator[tuple[SqlRegistryStore, SqlEventLog]]:
    engine = make_engine(db_url)
    await migrate.upgrade(engine)
    try:
        yield SqlRegistryStore(engine), SqlEventLog(engine)
    finally:
        await engine.dispose()


async def test_writes_append_events_in_order(
    stores: tuple[SqlRegistryStore, SqlEventLog],
) -> None:
    store, log = stores
    await store.create_model(FRAUD, ModelFields())
    await store.create_version(FRAUD, READY)
    await store.set_alias(AliasName("fraud", "production"), 1, None)
    with pytest.raises(errors.NotFound):  # a failed write appends nothing
        await store.set_alias(AliasName("fraud", "production"), 9, None)
    page = await log.read(0, 100)
    assert [e.type for e in page.items] == ["MODEL_CREATED", "VERSION_CREATED", "ALIAS_SET"]
    assert [e.revision for e in page.items] == [1, 2, 3]
    alias_event = page.items[2]
    assert alias_event.resource == "models/fraud/aliases/production"
    assert json.loads(alias_event.after_json)["version"] == "models/fraud/versions/1"
    assert alias_event.before_json == "" and alias_event.actor == "system"
    assert verify_chain(page.items, GENESIS_HASH) is None
    assert (await log.head())[0] == 3


async def test_tampering_breaks_the_chain(stores: tuple[SqlRegistryStore, SqlEventLog]) -> None:
    store, log = stores
    await store.create_model(FRAUD, ModelFields())
    for _ in range(3):
        await store.create_version(FRAUD, READY)
    async with log.engine.begin() as conn:
        await conn.execute(
            update(events).where(events.c.revision == 3).values(actor="someone-else")
        )
    assert verify_chain((await log.read(0, 100)).items, GENESIS_HASH) == 3


async def test_compaction_and_the_relay_floor(
    stores: tuple[SqlRegistryStore, SqlEventLog],
) -> None:
    store, log = stores
    await store.create_model(FRAUD, ModelFields())
    for _ in range(4):
        await store.create_version(FRAUD, READY)
    cursors = SqlRelayCursors(log.engine)
    await cursors.advance("nats", 2)
    # Everything is older than "now", but the relay has published only 2.
    assert await compact_once(log, retention_s=0) == 2
    with pytest.raises(errors.OutOfRange) as exc:
        await log.read(0, 10)
    assert exc.value.metadata["oldest_revision"] == "3"
    kept = (await log.read(2, 10)).items
    assert [e.revision for e in kept] == [3, 4, 5]
    assert verify_chain(kept) is None  # what remains still verifies
    await cursors.advance("nats", 5)
    assert await compact_once(log, retention_s=3600) == 2  # nothing that old
    await asyncio.sleep(0.002)
    assert await compact_once(log, retention_s=0) == 5


async def test_sqlite_and_postgres_agree_on_canonical_json(
    stores: tuple[SqlRegistryStore, SqlEventLog],
) -> None:
    store, log = stores
    await store.create_model(FRAUD, ModelFields(labels={"b": "2", "a": "1"}))
    (event,) = (await log.read(0, 10)).items
    assert '"labels":{"a":"1","b":"2"}' in event.after_json
    async with log.engine.connect() as conn:
        count = (await conn.execute(text("SELECT count(*) FROM events"))).scalar()
    assert count == 1
