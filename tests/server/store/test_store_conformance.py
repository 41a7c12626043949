"""The registry store's contract, run on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from modelregistry_server.domain import errors
from modelregistry_server.domain.etags import Etag, parse_etag
from modelregistry_server.domain.filters import parse_filter
from modelregistry_server.domain.names import AliasName, ModelName, VersionName
from modelregistry_server.domain.resources import ModelFields, VersionFields, VersionState
from modelregistry_server.store import migrate
from modelregistry_server.store.engine import make_engine
from modelregistry_server.store.sqlalchemy_store import SqlRegistryStore

FRAUD = ModelName("fraud")
READY = VersionFields(source_uri="s3://b/m", state=VersionState.READY)
NO_FILTER = parse_filter("", allow_state=True)


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[SqlRegistryStore]:
    engine = make_engine(db_url)
    await migrate.upgrade(engine)
    s = SqlRegistryStore(engine)
    try:
        yield s
    finally:
        await s.close()


def etag(value: str) -> Etag:
    parsed = parse_etag(value)
    assert parsed is not None
    return parsed


async def test_create_and_get_model(store: SqlRegistryStore) -> None:
    created = await store.create_model(FRAUD, ModelFields("Fraud", "d", {"team": "risk"}))
    got = await store.get_model(FRAUD)
    assert got == created
    assert got.labels == {"team": "risk"} and got.latest_version == 0
    with pytest.raises(errors.AlreadyExists):
        await store.create_model(FRAUD, ModelFields())


async def test_update_is_conditional_on_the_etag(store: SqlRegistryStore) -> None:
    m = await store.create_model(FRAUD, ModelFields("Fraud"))
    paths = frozenset({"description"})
    m2 = await store.update_model(FRAUD, ModelFields(description="one"), paths, etag(m.etag))
    assert m2.description == "one" and m2.display_name == "Fraud" and m2.etag != m.etag
    with pytest.raises(errors.EtagMismatch):
        await store.update_model(FRAUD, ModelFields(description="two"), paths, etag(m.etag))
    assert (await store.get_model(FRAUD)).description == "one"
    with pytest.raises(errors.NotFound):
        await store.update_model(ModelName("nope"), ModelFields(), paths, None)


async def test_recreated_model_does_not_accept_old_etags(store: SqlRegistryStore) -> None:
    old = await store.create_model(FRAUD, ModelFields())
    await store.delete_model(FRAUD, None, force=False)
    new = await store.create_model(FRAUD, ModelFields())
    assert new.uid != old.uid and new.etag != old.etag
    with pytest.raises(errors.EtagMismatch):
        await store.delete_model(FRAUD, etag(old.etag), force=False)


async def test_version_numbers_are_never_reused(store: SqlRegistryStore) -> None:
    await store.create_model(FRAUD, ModelFields())
    v1 = await store.create_version(FRAUD, READY)
    v2 = await store.create_version(FRAUD, READY)
    await store.delete_version(v2.name, None, force=False)
    v3 = await store.create_version(FRAUD, READY)
    assert [v1.name.version, v3.name.version] == [1, 3]
    assert (await store.get_model(FRAUD)).latest_version == 3


async def test_concurrent_version_creates_get_distinct_numbers(store: SqlRegistryStore) -> None:
    await store.create_model(FRAUD, ModelFields())
    created = await asyncio.gather(*(store.create_version(FRAUD, READY) for _ in range(20)))
    assert sorted(v.name.version for v in created) == list(range(1, 21))


async def test_listing_pages_by_keyset_and_filters(store: SqlRegistryStore) -> None:
    for i in range(7):
        labels = {"team": "risk" if i % 2 else "ads"}
        await store.create_model(ModelName(f"m{i}"), ModelFields(labels=labels))
    page = await store.list_models(parse_filter("", allow_state=False), None, 3)
    assert [m.name.model for m in page.items] == ["m0", "m1", "m2"] and page.more
    page = await store.list_models(parse_filter("", allow_state=False), "m5", 3)
    assert [m.name.model for m in page.items] == ["m6"] and not page.more
    risk = await store.list_models(parse_filter('labels.team = "risk"', False), None, 10)
    assert [m.name.model for m in risk.items] == ["m1", "m3", "m5"]
    not_risk = await store.list_models(parse_filter("labels.team != risk", False), None, 10)
    assert [m.name.model for m in not_risk.items] == ["m0", "m2", "m4", "m6"]
    has = await store.list_models(parse_filter("labels.owner:*", False), None, 10)
    assert has.items == []


async def test_creating_a_version_changes_only_the_models_counter(
    store: SqlRegistryStore,
) -> None:
    model = await store.create_model(FRAUD, ModelFields("Fraud", "the model", {"team": "risk"}))
    fields = VersionFields(source_uri="s3://b/m", description="the version", labels={"v": "1"})
    for number in (1, 2):
        version = await store.create_version(FRAUD, fields)
        assert version.name == VersionName("fraud", number)
        assert (version.description, version.labels) == ("the version", {"v": "1"})
    got = await store.get_model(FRAUD)
    assert (got.display_name, got.description, got.labels) == (
        "Fraud",
        "the model",
        {"team": "risk"},
    )
    assert got.latest_version == 2 and got.create_time_us == model.create_time_us
    with pytest.raises(errors.NotFound):
        await store.create_version(ModelName("nope"), fields)


async def test_versions_list_newest_first_and_filter_by_state(store: SqlRegistryStore) -> None:
    await store.create_model(FRAUD, ModelFields())
    for _ in range(3):
        await store.create_version(FRAUD, READY)
    await store.create_version(FRAUD, VersionFields())  # PENDING_UPLOAD
    page = await store.list_versions(FRAUD, NO_FILTER, None, 2)
    assert [v.name.version for v in page.items] == [4, 3] and page.more
    page = await store.list_versions(FRAUD, NO_FILTER, 3, 10)
    assert [v.name.version for v in page.items] == [2, 1]
    ready = await store.list_versions(FRAUD, parse_filter("state = READY", True), None, 10)
    assert [v.name.version for v in ready.items] == [3, 2, 1]
    with pytest.raises(errors.NotFound):
        await store.list_versions(ModelName("nope"), NO_FILTER, None, 10)


async def test_alias_compare_and_set(store: SqlRegistryStore) -> None:
    await store.create_model(FRAUD, ModelFields())
    await store.create_version(FRAUD, READY)
    await store.create_version(FRAUD, READY)
    prod = AliasName("fraud", "production")
    a1 = await store.set_alias(prod, 1, None)
    a2 = await store.set_alias(prod, 2, etag(a1.etag))
    assert a2.version == VersionName("fraud", 2)
    with pytest.raises(errors.EtagMismatch):
        await store.set_alias(prod, 1, etag(a1.etag))
    resolved = await store.resolve_alias(prod)
    assert resolved.alias.etag == a2.etag and resolved.version.name.version == 2
    assert resolved.rollout is None and resolved.revision > 0


async def test_alias_targets_must_be_ready_and_stay_put(store: SqlRegistryStore) -> None:
    await store.create_model(FRAUD, ModelFields())
    pending = await store.create_version(FRAUD, VersionFields())
    ready = await store.create_version(FRAUD, READY)
    prod = AliasName("fraud", "production")
    with pytest.raises(errors.FailedPrecondition) as exc:
        await store.set_alias(prod, pending.name.version, None)
    assert exc.value.reason == "VERSION_NOT_READY"
    await store.set_alias(prod, ready.name.version, None)
    archive = VersionFields(state=VersionState.ARCHIVED)
    with pytest.raises(errors.FailedPrecondition) as exc:
        await store.update_version(ready.name, archive, frozenset({"state"}), None)
    assert exc.value.reason == "VERSION_HAS_ALIASES"
    with pytest.raises(errors.FailedPrecondition):
        await store.delete_version(ready.name, None, force=False)
    await store.delete_version(ready.name, None, force=True)
    with pytest.raises(errors.NotFound):
        await store.get_alias(prod)


async def test_state_transitions(store: SqlRegistryStore) -> None:
    await store.create_model(FRAUD, ModelFields())
    pending = await store.create_version(FRAUD, VersionFields())
    ready = await store.create_version(FRAUD, READY)
    state = frozenset({"state"})
    with pytest.raises(errors.FailedPrecondition) as exc:
        await store.update_version(
            pending.name, VersionFields(state=VersionState.READY), state, None
        )
    assert exc.value.reason == "INVALID_STATE_TRANSITION"
    archived = await store.update_version(
        ready.name, VersionFields(state=VersionState.ARCHIVED), state, None
    )
    assert archived.state == VersionState.ARCHIVED
    restored = await store.update_version(
        ready.name, VersionFields(state=VersionState.READY), state, etag(archived.etag)
    )
    assert restored.state == VersionState.READY


async def test_delete_model_needs_force_when_it_has_versions(store: SqlRegistryStore) -> None:
    await store.create_model(FRAUD, ModelFields())
    await store.create_version(FRAUD, READY)
    await store.set_alias(AliasName("fraud", "production"), 1, None)
    with pytest.raises(errors.FailedPrecondition) as exc:
        await store.delete_model(FRAUD, None, force=False)
    assert exc.value.reason == "MODEL_HAS_VERSIONS"
    assert (await store.get_version(VersionName("fraud", 1))).name.version == 1
    await store.delete_model(FRAUD, None, force=True)
    with pytest.raises(errors.NotFound):
        await store.get_model(FRAUD)


async def test_delete_alias_conditional(store: SqlRegistryStore) -> None:
    await store.create_model(FRAUD, ModelFields())
    await store.create_version(FRAUD, READY)
    prod = AliasName("fraud", "production")
    a1 = await store.set_alias(prod, 1, None)
    await store.set_alias(prod, 1, None)  # unconditional write bumps the etag
    with pytest.raises(errors.EtagMismatch):
        await store.delete_alias(prod, etag(a1.etag))
    await store.delete_alias(prod, None)
    with pytest.raises(errors.NotFound):
        await store.delete_alias(prod, None)


async def test_setting_is_created_once(store: SqlRegistryStore) -> None:
    first = await store.get_or_create_setting("k", lambda: b"one")
    second = await store.get_or_create_setting("k", lambda: b"two")
    assert first == second == b"one"
