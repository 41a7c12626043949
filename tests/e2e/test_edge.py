"""A regional edge (`modelreg serve --upstream`) as a separate process: it
follows the primary's log, answers reads with the primary's names and
etags, honours `modelreg-min-revision`, refuses writes naming the primary,
and heals by itself across restarts of either side and a compacted log."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from modelregistry import RegistryClient
from modelregistry.v1 import event_service_pb2 as ev
from modelregistry.v1 import event_service_pb2_grpc, registry_service_pb2_grpc
from modelregistry.v1 import registry_service_pb2 as rpc
from modelregistry.v1 import resources_pb2 as pb
from modelregistry.v1.error_reasons import ErrorMetadataKey, ErrorReason
from support.grpc_errors import error_info, reason
from support.processes import ServeProcess

REVISION_KEY = "modelreg-revision"
MIN_REVISION_KEY = "modelreg-min-revision"
ALIAS = "models/fraud/aliases/production"


@pytest.fixture
def primary(tmp_path: Path) -> Iterator[ServeProcess]:
    server = ServeProcess(tmp_path / "primary", "--shutdown-grace", "1")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def edge_of(primary: ServeProcess, tmp_path: Path, name: str = "edge") -> ServeProcess:
    return ServeProcess(
        tmp_path / name,
        *("--upstream", primary.address, "--region", "eu-west", "--shutdown-grace", "1"),
    )


async def _revision(call: grpc.aio.UnaryUnaryCall) -> int:  # type: ignore[type-arg]
    metadata = await call.trailing_metadata()
    return int(dict(metadata)[REVISION_KEY])


async def _read_alias(address: str, min_revision: int) -> tuple[pb.Alias, int]:
    """GetAlias on `address`, waiting for `min_revision`; (alias, revision)."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = registry_service_pb2_grpc.RegistryServiceStub(channel)
        call = stub.GetAlias(
            rpc.GetAliasRequest(name=ALIAS),
            metadata=((MIN_REVISION_KEY, str(min_revision)),),
            timeout=20,
        )
        alias = await call
        return alias, await _revision(call)


async def _wait_edge(address: str, min_revision: int) -> None:
    """Until the edge answers reads at `min_revision` (it may still be syncing)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            await _read_alias(address, min_revision)
            return
        except grpc.aio.AioRpcError as err:
            if err.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _promote(client: RegistryClient, version: int) -> int:
    """Point the alias at `version` on the primary; the revision of the write."""
    await client.set_alias(ALIAS, version)
    return client.core.last_write_revision


async def test_edge_serves_the_primarys_state_and_refuses_writes(
    primary: ServeProcess, tmp_path: Path
) -> None:
    async with RegistryClient(primary.address) as client:
        await client.create_model("fraud")
        for _ in range(2):
            await client.create_model_version("models/fraud", source_uri="s3://b/m")
        written = await _promote(client, 1)
        assert written > 0
        edge = edge_of(primary, tmp_path)
        edge.start()
        try:
            await _wait_edge(edge.address, written)
            at_edge, revision = await _read_alias(edge.address, written)
            at_primary = await client.get_alias(ALIAS)
            assert revision >= written
            # Same name, version and etag as the primary: conditional writes
            # made with an etag read at the edge work on the primary.
            assert at_edge == at_primary

            # Read-your-writes: the next promotion is visible at the edge to
            # a reader that asks for its revision, however soon it asks.
            written = await _promote(client, 2)
            at_edge, revision = await _read_alias(edge.address, written)
            assert at_edge.version == "models/fraud/versions/2" and revision >= written

            # A revision far ahead is never applied: bounded wait, then a
            # catalogued UNAVAILABLE naming where the edge is.
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await _read_alias(edge.address, written + 1000)
            assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
            info = error_info(exc.value)
            assert info.reason == ErrorReason.REVISION_NOT_APPLIED.name
            assert int(info.metadata[ErrorMetadataKey.HEAD_REVISION.value]) >= written

            # Writes are refused with the primary's address.
            async with RegistryClient(edge.address) as at_the_edge:
                with pytest.raises(Exception) as refused:
                    await at_the_edge.set_alias(ALIAS, 1)
            err = refused.value.__cause__
            assert isinstance(err, grpc.aio.AioRpcError)
            assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
            info = error_info(err)
            assert info.reason == ErrorReason.READ_ONLY_EDGE.name
            assert info.metadata[ErrorMetadataKey.PRIMARY.value] == primary.address
            assert info.metadata[ErrorMetadataKey.REGION.value] == "eu-west"
            assert (await client.get_alias(ALIAS)).version == "models/fraud/versions/2"
        finally:
            edge.stop()


async def test_edge_watch_serves_the_primarys_log(primary: ServeProcess, tmp_path: Path) -> None:
    async with RegistryClient(primary.address) as client:
        await client.create_model("fraud")
        await client.create_model_version("models/fraud", source_uri="s3://b/m")
        written = await _promote(client, 1)
        edge = edge_of(primary, tmp_path)
        edge.start()
        try:
            await _wait_edge(edge.address, written)
            async with grpc.aio.insecure_channel(edge.address) as channel:
                stub = event_service_pb2_grpc.EventServiceStub(channel)
                call = stub.Watch(ev.WatchRequest(filter=ev.EventFilter(resource=ALIAS)))
                stream = call.__aiter__()
                await asyncio.wait_for(stream.__anext__(), 10)  # "now"
                written = await _promote(client, 1)
                got = await asyncio.wait_for(stream.__anext__(), 10)
                call.cancel()
            [event] = got.events
            primary_events = await client.list_events_page(start_revision=written)
            # The very event of the primary: revision, hash chain and all.
            assert event == primary_events.events[0]
        finally:
            edge.stop()


# Five process starts: on a loaded machine each takes seconds.
@pytest.mark.timeout(300)
async def test_edge_heals_across_restarts_without_losing_anything(
    primary: ServeProcess, tmp_path: Path
) -> None:
    edge = edge_of(primary, tmp_path)
    async with RegistryClient(primary.address) as client:
        await client.create_model("fraud")
        for _ in range(3):
            await client.create_model_version("models/fraud", source_uri="s3://b/m")
        written = await _promote(client, 1)
        edge.start()
        try:
            await _wait_edge(edge.address, written)
            # The edge crashes; the primary moves on; the edge resumes from
            # its own position (no re-snapshot needed) and catches up.
            edge.kill()
            written = await _promote(client, 2)
            edge.start()
            await _wait_edge(edge.address, written)
            assert (await _read_alias(edge.address, written))[0].version.endswith("/2")
        finally:
            edge.stop()
        edge.start()
        try:
            # The primary restarts under the edge: the edge reconnects alone.
            primary.stop()
            primary.start()
            written = await _promote(client, 3)
            await _wait_edge(edge.address, written)
            alias, _ = await _read_alias(edge.address, written)
            assert alias == await client.get_alias(ALIAS)
        finally:
            edge.stop()


@pytest.mark.timeout(300)
async def test_edge_resnapshots_when_the_log_was_compacted_past_it(tmp_path: Path) -> None:
    primary = ServeProcess(tmp_path / "primary", "--shutdown-grace", "1")
    edge = edge_of(primary, tmp_path)
    primary.start()
    try:
        async with RegistryClient(primary.address) as client:
            await client.create_model("fraud")
            for _ in range(2):
                await client.create_model_version("models/fraud", source_uri="s3://b/m")
            written = await _promote(client, 1)
            edge.start()
            await _wait_edge(edge.address, written)
            edge.stop()
            # While the edge is away, the alias moves and the primary
            # compacts its log past the edge's position.
            written = await _promote(client, 2)
            await client.create_model("other")
        primary.stop()
        await asyncio.sleep(1.5)
        primary.args += ["--event-retention-days", "0.00001"]  # about a second
        primary.start()
        async with RegistryClient(primary.address) as client:
            with pytest.raises(Exception) as compacted:
                await client.list_events_page(start_revision=1)
            assert isinstance(compacted.value.__cause__, grpc.aio.AioRpcError)
            assert reason(compacted.value.__cause__) == ErrorReason.REVISION_COMPACTED.name
            edge.start()
            alias, revision = await _read_alias(edge.address, written)
            assert alias == await client.get_alias(ALIAS)
            assert alias.version.endswith("/2") and revision >= written
            async with grpc.aio.insecure_channel(edge.address) as channel:
                models = await registry_service_pb2_grpc.RegistryServiceStub(channel).ListModels(
                    rpc.ListModelsRequest()
                )
            assert [m.name for m in models.models] == [
                m.name for m in (await client.list_models_page()).models
            ]
    finally:
        edge.stop()
        primary.stop()
