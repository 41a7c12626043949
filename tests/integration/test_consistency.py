"""The revision contract on every server: answers carry `modelreg-revision`,
reads honour `modelreg-min-revision` (bounded wait, then a catalogued
UNAVAILABLE), and a regional edge on PostgreSQL reads its own writes'
revision with the SDK's `read_your_writes`."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from modelregistry import RegistryClient
from modelregistry.errors import RegistryError
from modelregistry.v1 import registry_service_pb2 as rpc
from modelregistry.v1 import registry_service_pb2_grpc
from modelregistry.v1.error_reasons import ErrorMetadataKey, ErrorReason
from modelregistry_server.config import ServerConfig
from support.grpc_errors import error_info
from support.in_process import serving

ALIAS = "models/fraud/aliases/production"


async def test_primary_answers_carry_revisions_and_wait_is_bounded(tmp_path: Path) -> None:
    config = ServerConfig(listen="127.0.0.1:0", data_dir=tmp_path, min_revision_wait_s=0.3)
    async with serving(config) as server:
        address = f"127.0.0.1:{server.port}"
        async with RegistryClient(address) as client:
            await client.create_model("fraud")
            await client.create_model_version("models/fraud", source_uri="s3://b/m")
            first = client.core.last_write_revision
            await client.set_alias(ALIAS, 1)
            written = client.core.last_write_revision
            assert 0 < first < written  # each write names a revision at or after its own
        async with grpc.aio.insecure_channel(address) as channel:
            stub = registry_service_pb2_grpc.RegistryServiceStub(channel)
            call = stub.GetAlias(
                rpc.GetAliasRequest(name=ALIAS),
                metadata=(("modelreg-min-revision", str(written)),),
            )
            await call
            assert int(dict(await call.trailing_metadata())["modelreg-revision"]) >= written

            for bad in ("-1", "abc", "1" * 20):
                with pytest.raises(grpc.aio.AioRpcError) as exc:
                    await stub.GetAlias(
                        rpc.GetAliasRequest(name=ALIAS), metadata=(("modelreg-min-revision", bad),)
                    )
                assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert error_info(exc.value).reason == ErrorReason.INVALID_MIN_REVISION.name

            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await stub.GetAlias(
                    rpc.GetAliasRequest(name=ALIAS),
                    metadata=(("modelreg-min-revision", str(written + 50)),),
                )
            assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
            info = error_info(exc.value)
            assert info.reason == ErrorReason.REVISION_NOT_APPLIED.name
            assert info.metadata[ErrorMetadataKey.MIN_REVISION.value] == str(written + 50)
            assert int(info.metadata[ErrorMetadataKey.HEAD_REVISION.value]) >= written


async def test_edge_on_postgresql_reads_your_writes(pg_url: str, tmp_path: Path) -> None:
    primary_config = ServerConfig(listen="127.0.0.1:0", data_dir=tmp_path / "primary")
    async with serving(primary_config) as primary:
        primary_address = f"127.0.0.1:{primary.port}"
        edge_config = ServerConfig(
            listen="127.0.0.1:0",
            data_dir=tmp_path / "edge",
            database_url=pg_url,
            upstream=primary_address,
            region="us-east",
        )
        async with (
            serving(edge_config) as edge,
            RegistryClient(primary_address) as writer,
            RegistryClient(f"127.0.0.1:{edge.port}", read_your_writes=True) as reader,
        ):
            await writer.create_model("fraud")
            for _ in range(2):
                await writer.create_model_version("models/fraud", source_uri="s3://b/m")
            for version in (1, 2, 1, 2):
                await writer.set_alias(ALIAS, version)
                # The reader knows the writer's revision (as a client that
                # wrote through the primary and reads at its edge would).
                reader.core.last_write_revision = writer.core.last_write_revision
                at_edge = await reader.get_alias(ALIAS)
                assert at_edge == await writer.get_alias(ALIAS)
            versions = [v async for v in reader.list_model_versions("models/fraud")]
            assert versions == [v async for v in writer.list_model_versions("models/fraud")]
            with pytest.raises(RegistryError) as refused:
                await reader.create_model("other")
            assert refused.value.reason == ErrorReason.READ_ONLY_EDGE.name
