"""Optimistic locking under contention: of 50 promoters with the same etag,
exactly one wins, over the real API on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from modelregistry.v1 import registry_service_pb2 as rpc
from modelregistry.v1 import registry_service_pb2_grpc
from modelregistry.v1 import resources_pb2 as pb
from modelregistry_server.config import ServerConfig
from modelregistry_server.server import Running
from support.in_process import start_server

CONTENDERS = 50


@pytest.fixture
async def pg_server(pg_url: str, tmp_path: Path) -> AsyncIterator[Running]:
    running = await start_server(
        ServerConfig(listen="127.0.0.1:0", data_dir=tmp_path, database_url=pg_url)
    )
    try:
        yield running
    finally:
        await running.stop(grace=1)


def reason_of(err: grpc.aio.AioRpcError) -> str:
    trailers: Any = err.trailing_metadata() or ()
    for key, value in trailers:
        if key == "grpc-status-details-bin":
            assert isinstance(value, bytes)
            info = error_details_pb2.ErrorInfo()
            status_pb2.Status.FromString(value).details[0].Unpack(info)
            return str(info.reason)
    return ""


async def test_fifty_promoters_one_winner(pg_server: Running) -> None:
    target = f"127.0.0.1:{pg_server.port}"
    async with grpc.aio.insecure_channel(target) as ch:
        stub = registry_service_pb2_grpc.RegistryServiceStub(ch)
        await stub.CreateModel(rpc.CreateModelRequest(model_id="fraud"))
        for _ in range(CONTENDERS + 1):
            await stub.CreateModelVersion(
                rpc.CreateModelVersionRequest(
                    parent="models/fraud", model_version=pb.ModelVersion(source_uri="s3://b/m")
                )
            )
        name = "models/fraud/aliases/production"
        start = await stub.SetAlias(
            rpc.SetAliasRequest(alias=pb.Alias(name=name, version="models/fraud/versions/1"))
        )

    # One channel per contender: independent clients, as in a real fleet.
    async def promote(i: int) -> tuple[str, str]:
        async with grpc.aio.insecure_channel(target) as ch:
            stub = registry_service_pb2_grpc.RegistryServiceStub(ch)
            version = f"models/fraud/versions/{i + 2}"
            try:
                await stub.SetAlias(
                    rpc.SetAliasRequest(alias=pb.Alias(name=name, version=version), etag=start.etag)
                )
                return "won", version
            except grpc.aio.AioRpcError as err:
                assert err.code() == grpc.StatusCode.ABORTED, err.details()
                return reason_of(err), version

    results = await asyncio.gather(*(promote(i) for i in range(CONTENDERS)))
    winners = [v for outcome, v in results if outcome == "won"]
    losers = [outcome for outcome, _ in results if outcome != "won"]
    assert len(winners) == 1
    assert losers == ["ETAG_MISMATCH"] * (CONTENDERS - 1)
    async with grpc.aio.insecure_channel(target) as ch:
        stub = registry_service_pb2_grpc.RegistryServiceStub(ch)
        resolved = await stub.ResolveAlias(rpc.ResolveAliasRequest(name=name))
    assert resolved.alias.version == winners[0]
