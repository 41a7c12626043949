"""The SDK against a real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from modelregistry import (
    AlreadyExistsError,
    ConflictError,
    FailedPreconditionError,
    InvalidArgumentError,
    ModelVersion,
    NotFoundError,
    RegistryClient,
    RetryPolicy,
    SyncRegistryClient,
    UnavailableError,
)
from modelregistry_server.config import ServerConfig
from modelregistry_server.server import Running, start
from support.ports import free_port


@pytest.fixture
async def client(server: Running) -> AsyncIterator[RegistryClient]:
    async with RegistryClient(f"127.0.0.1:{server.port}", timeout=10) as registry:
        yield registry


async def test_model_crud_with_etags(client: RegistryClient) -> None:
    created = await client.create_model(
        "fraud", display_name="Fraud", description="scores payments", labels={"team": "risk"}
    )
    assert created.name == "models/fraud"
    assert created.etag
    assert await client.get_model("models/fraud") == created

    with pytest.raises(AlreadyExistsError) as exists:
        await client.create_model("fraud")
    assert exists.value.reason == "MODEL_ALREADY_EXISTS"
    assert exists.value.code == grpc.StatusCode.ALREADY_EXISTS

    # Read-modify-write: the etag of the read makes the write conditional.
    read = await client.get_model("models/fraud")
    read.description = "scores card payments"
    updated = await client.update_model(read, ["description"])
    assert updated.description == "scores card payments"
    assert updated.display_name == "Fraud"
    assert updated.etag != created.etag

    stale = await client.get_model("models/fraud")
    stale.etag = created.etag
    stale.description = "lost update"
    with pytest.raises(ConflictError) as conflict:
        await client.update_model(stale, ["description"])
    assert conflict.value.reason == "ETAG_MISMATCH"
    assert conflict.value.code == grpc.StatusCode.ABORTED
    assert conflict.value.request_id
    assert read.etag == created.etag, "the caller's message is not modified"

    # etag="" overrides the message's etag: an unconditional write.
    forced = await client.update_model(stale, ["description"], etag="")
    assert forced.description == "lost update"

    await client.delete_model("models/fraud", etag=forced.etag)
    with pytest.raises(NotFoundError) as missing:
        await client.get_model("models/fraud")
    assert missing.value.reason == "MODEL_NOT_FOUND"
    assert missing.value.code == grpc.StatusCode.NOT_FOUND
    assert "fraud" in missing.value.message
    assert str(missing.value).startswith("NOT_FOUND MODEL_NOT_FOUND: ")


async def test_list_iterators_walk_every_page(client: RegistryClient) -> None:
    ids = [f"model-{i:02d}" for i in range(7)]
    for i, model_id in enumerate(reversed(ids)):
        await client.create_model(model_id, labels={"parity": "even" if i % 2 == 0 else "odd"})

    names = [m.name async for m in client.list_models(page_size=3)]
    assert names == [f"models/{i}" for i in ids]

    first = await client.list_models_page(page_size=3)
    assert len(first.models) == 3 and first.next_page_token
    second = await client.list_models_page(page_size=3, page_token=first.next_page_token)
    assert [m.name for m in second.models] == [f"models/{i}" for i in ids[3:6]]

    even = [m.name async for m in client.list_models(filter='labels.parity = "even"', page_size=2)]
    assert len(even) == 4

    for _ in range(5):
        await client.create_model_version("models/model-00", source_uri="s3://b/m")
    numbers = [v.version async for v in client.list_model_versions("models/model-00", page_size=2)]
    assert numbers == [5, 4, 3, 2, 1]

    for alias in ("canary", "production", "staging"):
        await client.set_alias(f"models/model-00/aliases/{alias}", 1)
    aliases = [a.name async for a in client.list_aliases("models/model-00", page_size=2)]
    assert aliases == [f"models/model-00/aliases/{a}" for a in ("canary", "production", "staging")]


async def test_versions_and_aliases(client: RegistryClient) -> None:
    await client.create_model("fraud")
    v1 = await client.create_model_version(
        "models/fraud",
        source_uri="s3://bucket/run-1/model",
        description="first",
        labels={"framework": "xgboost"},
        metadata={"auc": 0.91, "params": {"depth": 6}},
    )
    assert v1.name == "models/fraud/versions/1"
    assert v1.state == ModelVersion.READY
    assert v1.metadata["auc"] == 0.91
    assert dict(v1.labels) == {"framework": "xgboost"}
    assert await client.get_model_version(v1.name) == v1
    v2 = await client.create_model_version("models/fraud", source_uri="s3://bucket/run-2/model")

    production = "models/fraud/aliases/production"
    alias = await client.set_alias(production, 1)
    assert alias.version == v1.name
    resolved = await client.resolve_alias(production)
    assert resolved.model_version.source_uri == "s3://bucket/run-1/model"
    assert resolved.alias.etag == alias.etag

    # Compare-and-set: the first mover wins, the second holds a stale etag.
    moved = await client.set_alias(production, v2.name, etag=alias.etag)
    with pytest.raises(ConflictError) as lost:
        await client.set_alias(production, 1, etag=alias.etag)
    assert lost.value.reason == "ETAG_MISMATCH"
    assert (await client.get_alias(production)).version == v2.name

    with pytest.raises(FailedPreconditionError) as in_use:
        await client.delete_model_version(v2.name)
    assert in_use.value.reason == "VERSION_HAS_ALIASES"

    v1.description = "retired"
    v1.state = ModelVersion.ARCHIVED
    archived = await client.update_model_version(v1, ["description", "state"])
    assert archived.state == ModelVersion.ARCHIVED
    with pytest.raises(FailedPreconditionError) as not_ready:
        await client.set_alias(production, 1)
    assert not_ready.value.reason == "VERSION_NOT_READY"

    await client.delete_alias(production, etag=moved.etag)
    with pytest.raises(NotFoundError) as gone:
        await client.resolve_alias(production)
    assert gone.value.reason == "ALIAS_NOT_FOUND"
    await client.delete_model_version(v2.name)
    with pytest.raises(NotFoundError) as no_version:
        await client.get_model_version(v2.name)
    assert no_version.value.reason == "VERSION_NOT_FOUND"
    with pytest.raises(FailedPreconditionError):
        await client.delete_model("models/fraud")
    await client.delete_model("models/fraud", force=True)


async def test_bad_input_and_request_ids(client: RegistryClient) -> None:
    with pytest.raises(InvalidArgumentError) as bad_name:
        await client.create_model("Not_Valid", request_id="req-bad-name")
    assert bad_name.value.reason == "INVALID_NAME"
    assert bad_name.value.request_id == "req-bad-name"
    assert bad_name.value.metadata["field"]
    # Errors cross process boundaries (multiprocessing, task queues) intact.
    copy = pickle.loads(pickle.dumps(bad_name.value))
    assert (type(copy), copy.reason, copy.request_id) == (
        InvalidArgumentError,
        "INVALID_NAME",
        "req-bad-name",
    )

    with pytest.raises(InvalidArgumentError) as bad_size:
        await client.list_models_page(page_size=-1)
    assert bad_size.value.reason == "INVALID_PAGE_SIZE"

    with pytest.raises(InvalidArgumentError) as bad_filter:
        _ = [m async for m in client.list_models(filter="labels.team ~ x")]
    assert bad_filter.value.reason == "INVALID_FILTER"


async def test_sync_client_for_scripts(server: Running) -> None:
    def script() -> list[str]:
        with SyncRegistryClient(f"127.0.0.1:{server.port}") as registry:
            registry.create_model("churn")
            version = registry.create_model_version("models/churn", source_uri="gs://b/churn")
            registry.set_alias("models/churn/aliases/production", version.version)
            resolved = registry.resolve_alias("models/churn/aliases/production")
            assert resolved.model_version.name == version.name
            try:
                registry.get_model("models/absent")
            except NotFoundError as err:
                assert err.reason == "MODEL_NOT_FOUND"
            else:
                raise AssertionError("expected NotFoundError")
            return [m.name for m in registry.list_models(page_size=1)]

    # A blocking client in a script's thread, while this loop serves.
    assert await asyncio.to_thread(script) == ["models/churn"]


async def test_reads_retry_until_the_server_is_up_writes_do_not(
    sqlite_url: str, tmp_path: Path
) -> None:
    port = free_port()
    policy = RetryPolicy(max_attempts=30, initial_backoff=0.05, max_backoff=0.3)
    options = [("grpc.initial_reconnect_backoff_ms", 50), ("grpc.max_reconnect_backoff_ms", 200)]
    async with RegistryClient(f"127.0.0.1:{port}", retry=policy, options=options) as client:
        read = asyncio.create_task(client.get_model("models/fraud"))
        with pytest.raises(UnavailableError):
            await client.create_model("fraud")
        await asyncio.sleep(0.5)
        assert not read.done(), "the read keeps retrying while nothing listens"
        running = await start(
            ServerConfig(
                listen=f"127.0.0.1:{port}", data_dir=tmp_path / "data", database_url=sqlite_url
            )
        )
        try:
            # The read reaches the server: its answer, not UNAVAILABLE.
            with pytest.raises(NotFoundError):
                await asyncio.wait_for(read, timeout=20)
        finally:
            await running.stop(grace=1)
