"""Clients with several addresses, nearest first: they read from their
region's edge, and go on to the primary when the edge is down; a serving
agent loads its model through whichever answers."""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from pathlib import Path

from modelregistry import RegistryClient
from modelregistry.serving import ServingAgent
from modelregistry_server.config import ServerConfig
from support.in_process import start_server
from support.ports import free_port

ALIAS = "models/fraud/aliases/production"


async def test_reads_and_the_agent_fall_back_to_the_next_address(tmp_path: Path) -> None:
    primary = await start_server(ServerConfig(listen="127.0.0.1:0", data_dir=tmp_path / "primary"))
    primary_address = f"127.0.0.1:{primary.port}"
    edge = await start_server(
        ServerConfig(
            listen="127.0.0.1:0",
            data_dir=tmp_path / "edge",
            upstream=primary_address,
            region="eu-west",
        )
    )
    edge_address = f"127.0.0.1:{edge.port}"
    try:
        model_dir = tmp_path / "model"
        model_dir.mkdir()
        (model_dir / "weights.bin").write_bytes(os.urandom(100_000))
        async with RegistryClient(primary_address) as writer:
            await writer.create_model("fraud")
            await writer.create_model_version("models/fraud")
            await writer.push("models/fraud/versions/1", model_dir)
            await writer.set_alias(ALIAS, 1)
            written = writer.core.last_write_revision
            expected = await writer.get_alias(ALIAS)

        async with RegistryClient([edge_address, primary_address]) as reader:
            reader.core.min_revision = written
            assert await reader.get_alias(ALIAS) == expected
            assert reader.core.target == edge_address
            # A write the edge refuses goes on to the primary (one of the
            # client's own addresses); reads stay at the edge.
            await reader.set_alias(ALIAS, 1)
            assert reader.core.last_write_revision > written
            assert reader.core.target == edge_address
            reader.core.read_your_writes = True
            moved = await reader.get_alias(ALIAS)  # at the edge, with the write in it
            assert moved.etag != expected.etag
            expected = moved
            await edge.stop(grace=0)
            assert await reader.get_alias(ALIAS) == expected  # the edge is gone
            assert reader.core.target == primary_address

        # Nothing listens at the nearest address: the agent starts anyway.
        dead = f"127.0.0.1:{free_port()}"
        loaded: list[bytes] = []

        def load(path: Path) -> Path:
            loaded.append((path / "weights.bin").read_bytes())
            return path

        agent = ServingAgent(
            [dead, primary_address],
            alias=ALIAS,
            instance_id="pod-1",
            cache_dir=tmp_path / "cache",
            load=load,
            ttl=timedelta(minutes=5),
        )
        async with agent:
            await asyncio.sleep(0)
        assert loaded == [(model_dir / "weights.bin").read_bytes()]
    finally:
        await edge.stop(grace=0)
        await primary.stop(grace=0)
