"""`--read-database-url`: registry reads run on a PostgreSQL streaming
replica when it has applied what the reader must see, else on the primary.

A real pair: two clusters on loopback, the second made with pg_basebackup
and streaming from the first. Replay on the replica is paused to make it
lag; the replica is stopped to make it fail.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from modelregistry.v1 import registry_service_pb2 as rpc
from modelregistry.v1 import registry_service_pb2_grpc as rpc_grpc
from modelregistry.v1 import resources_pb2 as pb
from modelregistry.v1.error_reasons import ErrorReason
from modelregistry_server.config import ServerConfig
from modelregistry_server.server import Running
from modelregistry_server.store.read_routing import ReadRouter
from support.grpc_errors import expect_error
from support.in_process import serving
from support.pg_replication import ReplicatedPair, have_tools, replicated_pair
from support.services import require

MIN_REVISION = "modelreg-min-revision"
REVISION = "modelreg-revision"


@pytest.fixture(scope="module")
def pair() -> Iterator[ReplicatedPair]:
    if not have_tools():
        require("PostgreSQL's server binaries (initdb, pg_ctl, pg_basebackup) are not installed")
    with replicated_pair() as pair:
        pair.create("registry")
        yield pair


@pytest.fixture
async def replicated(pair: ReplicatedPair, tmp_path: Path) -> AsyncIterator[Running]:
    config = ServerConfig(
        listen="127.0.0.1:0",
        data_dir=tmp_path / "data",
        database_url=pair.primary.url("registry"),
        read_database_urls=(pair.replica.url("registry"),),
        read_cache_s=0,
        read_replica_wait_s=0.3,
    )
    async with serving(config) as running:
        yield running


def router_of(running: Running) -> ReadRouter:
    router = running.store.read_router
    assert router is not None
    return router


async def call(method: Any, request: Any, min_revision: int | None = None) -> tuple[Any, int]:
    """The answer and the revision it says it reflects."""
    metadata = () if min_revision is None else ((MIN_REVISION, str(min_revision)),)
    pending = method(request, metadata=metadata)
    answer = await pending
    trailing = dict(await pending.trailing_metadata())
    return answer, int(trailing[REVISION])


async def until(predicate: Any, within: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def test_reads_follow_the_replica_and_never_go_back_in_time(
    pair: ReplicatedPair, replicated: Running
) -> None:
    router = router_of(replicated)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{replicated.port}") as channel:
        stub = rpc_grpc.RegistryServiceStub(channel)
        get = rpc.GetModelRequest(name="models/fraud")

        # Read-your-writes through this server: no metadata needed.
        _, written = await call(
            stub.CreateModel,
            rpc.CreateModelRequest(model_id="fraud", model=pb.Model(description="v1")),
        )
        model, seen = await call(stub.GetModel, get)
        assert model.description == "v1" and seen >= written

        # Routing: once the replica has the write, reads run there. A change
        # made on the primary behind the registry's back (no event) stays
        # invisible while the replica's replay is paused: the read was the
        # replica's.
        await until(lambda: router.replicas[0].applied >= written)
        pair.pause_replay()
        try:
            pair.primary.execute(
                "UPDATE models SET description = 'primary only' WHERE name = 'fraud'", "registry"
            )
            before = router.counts.replica
            model, _ = await call(stub.GetModel, get)
            assert model.description == "v1"
            assert router.counts.replica == before + 1

            # Lag: a write the paused replica lacks is still read back, from
            # the primary after the bounded wait.
            fallbacks = router.counts.fallbacks.get("lag", 0)
            _, written = await call(
                stub.UpdateModel,
                rpc.UpdateModelRequest(
                    model=pb.Model(name="models/fraud", description="v2"),
                    update_mask=field_mask_pb2.FieldMask(paths=["description"]),
                ),
            )
            model, seen = await call(stub.GetModel, get)
            assert model.description == "v2" and seen >= written
            assert router.counts.fallbacks["lag"] == fallbacks + 1
        finally:
            pair.resume_replay()

        # Caught up: the replica serves again, and the client's floor holds.
        await until(lambda: router.replicas[0].applied >= written)
        before = router.counts.replica
        model, seen = await call(stub.GetModel, get, min_revision=written)
        assert model.description == "v2" and seen >= written
        assert router.counts.replica == before + 1


async def test_a_replica_that_goes_down_costs_no_read(
    pair: ReplicatedPair, replicated: Running
) -> None:
    router = router_of(replicated)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{replicated.port}") as channel:
        stub = rpc_grpc.RegistryServiceStub(channel)
        _, written = await call(stub.CreateModel, rpc.CreateModelRequest(model_id="churn"))
        await until(lambda: router.replicas[0].healthy and router.replicas[0].applied >= written)
        pair.replica.stop("immediate")
        try:
            for _ in range(20):
                model, _ = await call(stub.GetModel, rpc.GetModelRequest(name="models/churn"))
                assert model.name == "models/churn"
            await until(lambda: not router.replicas[0].healthy)
        finally:
            pair.replica.start()
        await until(lambda: router.replicas[0].healthy)
        before = router.counts.replica
        await call(stub.GetModel, rpc.GetModelRequest(name="models/churn"))
        assert router.counts.replica == before + 1


async def test_min_revision_metadata_is_checked(replicated: Running) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{replicated.port}") as channel:
        stub = rpc_grpc.RegistryServiceStub(channel)
        for bad in ("-1", "abc", "1e3", "99999999999999999999"):
            await expect_error(
                stub.ListModels(rpc.ListModelsRequest(), metadata=((MIN_REVISION, bad),)),
                grpc.StatusCode.INVALID_ARGUMENT,
                ErrorReason.INVALID_MIN_REVISION,
            )


async def test_every_answer_carries_the_revision_it_reflects(tmp_path: Path) -> None:
    """Without replicas too (the embedded default): a write's answer names the
    revision it appended, and reads answer with that revision or a later one."""
    config = ServerConfig(listen="127.0.0.1:0", data_dir=tmp_path / "data")
    async with (
        serving(config) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel,
    ):
        stub = rpc_grpc.RegistryServiceStub(channel)
        _, first = await call(stub.CreateModel, rpc.CreateModelRequest(model_id="a"))
        _, second = await call(stub.CreateModel, rpc.CreateModelRequest(model_id="b"))
        assert 0 < first < second
        _, seen = await call(stub.GetModel, rpc.GetModelRequest(name="models/a"), first)
        assert seen >= second
        listed, seen = await call(stub.ListModels, rpc.ListModelsRequest())
        assert len(listed.models) == 2 and seen >= second
