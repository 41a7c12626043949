"""The event log: every write appends an event in its transaction, in order,
hash-chained; compaction keeps what a queue still needs."""

from __future__ import annotations

import asyncio
import json
import time
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


def now_us() -> int:
    return time.time_ns() // 1000


async def test_compaction_stops_where_a_relay_still_owes_events(
    stores: tuple[SqlRegistryStore, SqlEventLog],
) -> None:
    store, log = stores
    await store.create_model(FRAUD, ModelFields())
    for _ in range(4):
        await store.create_version(FRAUD, READY)
    cursors = SqlRelayCursors(log.engine)
    await cursors.advance("nats", 2)
    await cursors.advance("audit", 4)
    await asyncio.sleep(0.002)
    # Every event is older than the cut-off, but one relay has published only 2.
    assert await log.compact(now_us()) == 2
    with pytest.raises(errors.OutOfRange) as exc:
        await log.read(0, 10)
    assert exc.value.metadata["oldest_revision"] == "3"
    kept = (await log.read(2, 10)).items
    assert [e.revision for e in kept] == [3, 4, 5]
    assert verify_chain(kept) is None  # what remains still verifies
    await cursors.advance("nats", 5)
    assert await log.compact(now_us()) == 4  # now the other relay is the floor
    await cursors.advance("audit", 5)
    assert await log.compact(now_us()) == 5
    assert await log.compact(now_us()) == 5  # nothing left to drop
    assert await log.head() == (5, 5)


async def test_compaction_without_relays_drops_what_is_older_than_the_cut_off(
    stores: tuple[SqlRegistryStore, SqlEventLog],
) -> None:
    store, log = stores
    assert await log.compact(now_us()) == 0  # an empty log
    await store.create_model(FRAUD, ModelFields())
    await store.create_version(FRAUD, READY)
    await asyncio.sleep(0.002)
    cut_off = now_us()
    await asyncio.sleep(0.002)
    await store.create_version(FRAUD, READY)
    assert await log.compact(cut_off) == 2
    assert [e.revision for e in (await log.read(2, 10)).items] == [3]


async def test_the_compactor_keeps_the_retention_window(
    stores: tuple[SqlRegistryStore, SqlEventLog],
) -> None:
    store, log = stores
    await store.create_model(FRAUD, ModelFields())
    assert await compact_once(log, retention_s=3600) == 0  # nothing that old
    await asyncio.sleep(0.002)
    assert await compact_once(log, retention_s=0) == 1


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


async def test_reads_are_bounded_in_bytes_as_well_as_in_rows(
    stores: tuple[SqlRegistryStore, SqlEventLog],
) -> None:
    store, log = stores
    await store.create_model(FRAUD, ModelFields())
    for _ in range(6):  # 6 events of about 10 KB of JSON each
        await store.create_version(FRAUD, VersionFields(description="x" * 10_000))
    page = await log.read(1, 100, max_bytes=25_000)
    # The third crosses the budget and ends the page: bounded by one event.
    assert [e.revision for e in page.items] == [2, 3, 4] and page.more
    page = await log.read(1, 100, max_bytes=1)  # the first always comes
    assert [e.revision for e in page.items] == [2] and page.more
    seen: list[int] = []
    after = 0
    while True:
        page = await log.read(after, 100, max_bytes=25_000)
        seen += [e.revision for e in page.items]
        if not page.more:
            break
        after = seen[-1]
    assert seen == list(range(1, 8))


async def test_an_event_over_the_maximum_size_is_never_written(
    stores: tuple[SqlRegistryStore, SqlEventLog], monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelregistry_server.store import event_log

    store, log = stores
    monkeypatch.setattr(event_log, "MAX_EVENT_BYTES", 1000)
    with pytest.raises(event_log.EventTooLarge):
        await store.create_model(FRAUD, ModelFields(description="x" * 2000))
    assert (await log.head())[0] == 0
    with pytest.raises(errors.NotFound):  # the write went with it
        await store.get_model(FRAUD)
