"""Access at an edge with `--auth required`: the edge verifies callers' JWTs
with the primary's configuration and authorizes them against the policies
it replicates, so a grant or a revocation on the primary applies at the
edge as soon as the edge has applied it; the edge reads the primary with
its own identity (roles/edge)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from modelregistry import RegistryClient
from modelregistry.errors import RegistryError
from modelregistry.v1.error_reasons import ErrorReason
from support.in_process import start_server
from support.jwt_issuer import Issuer

ALIAS = "models/fraud/aliases/production"


async def test_edge_authorizes_with_the_primarys_replicated_policies(tmp_path: Path) -> None:
    issuer = Issuer()
    primary = await start_server(issuer.server_config("", tmp_path / "primary", "user:root"))
    primary_address = f"127.0.0.1:{primary.port}"
    token_file = tmp_path / "edge.token"
    token_file.write_text(issuer.token("edge-bot"))
    edge = None
    try:
        async with RegistryClient(primary_address, token=issuer.token("root")) as root:
            await root.grant("registry", "roles/edge", "user:edge-bot")
            await root.create_model("fraud")
            await root.create_model_version("models/fraud", source_uri="s3://b/m")
            await root.set_alias(ALIAS, 1)
            await root.grant("models/fraud", "roles/viewer", "user:alice")
            written = root.core.last_write_revision
            edge = await start_server(
                issuer.server_config(
                    "",
                    tmp_path / "edge",
                    upstream=primary_address,
                    region="eu-west",
                    upstream_token_file=token_file,
                )
            )
            assert edge.edge is not None
            await asyncio.wait_for(edge.edge.follower.state.synced.wait(), 30)
            edge_address = f"127.0.0.1:{edge.port}"
            async with (
                RegistryClient(edge_address, token=issuer.token("alice")) as alice,
                RegistryClient(edge_address, token=issuer.token("bob")) as bob,
            ):
                alice.core.min_revision = bob.core.min_revision = written
                assert (await alice.get_alias(ALIAS)).version == "models/fraud/versions/1"
                with pytest.raises(RegistryError) as denied:
                    await bob.get_alias(ALIAS)
                assert denied.value.reason == ErrorReason.IAM_PERMISSION_DENIED.name

                await root.grant("models/fraud", "roles/viewer", "user:bob")
                bob.core.min_revision = root.core.last_write_revision
                assert (await bob.get_alias(ALIAS)).version == "models/fraud/versions/1"
    finally:
        if edge is not None:
            await edge.stop(grace=0)
        await primary.stop(grace=0)
