"""The SDK's connection core: a client, a core and a bare channel all move artifacts."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from modelregistry import RegistryClient, pull, push
from modelregistry.core import UNNAMED_TARGET, Core, core_of
from modelregistry.v1 import resources_pb2 as pb
from modelregistry_server.server import Running


@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


async def test_push_and_pull_over_a_bare_channel(
    server: Running, channel: grpc.aio.Channel, tmp_path: Path
) -> None:
    (tmp_path / "model.bin").write_bytes(b"weights" * 1000)
    async with RegistryClient(f"127.0.0.1:{server.port}") as client:
        await client.create_model("bare")
        version = await client.create_model_version("models/bare")

    ready = await push(channel, version.name, tmp_path / "model.bin", state_dir=tmp_path / "s")
    result = await pull(channel, version.name, tmp_path / "out")

    assert ready.state == pb.ModelVersion.READY
    assert (tmp_path / "out" / "model.bin").read_bytes() == b"weights" * 1000
    assert result.version == version.name
    # The caller's channel stays open: it still serves calls.
    await channel.channel_ready()


async def test_a_core_over_a_channel_leaves_it_to_its_owner(channel: grpc.aio.Channel) -> None:
    core = core_of(channel)
    assert core.target == UNNAMED_TARGET
    assert core.channel() is channel
    await core.close()
    assert core.channel() is channel


async def test_a_client_and_its_core_share_one_channel(server: Running) -> None:
    async with RegistryClient(f"127.0.0.1:{server.port}", timeout=3) as client:
        assert core_of(client) is client.core
        assert client.core.channel() is client.channel()
        assert isinstance(client.core, Core)
        assert client.core.timeout == client.timeout == 3
        client.timeout = 4
        assert client.core.timeout == 4
