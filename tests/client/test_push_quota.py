"""A push through the SDK counts against its model's quota: the files' sizes
are declared at start, so a push that does not fit fails before its bytes
are stored, and a smaller one goes through."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from modelregistry import RegistryClient, ResourceExhaustedError, push_files
from modelregistry_server.config import ServerConfig
from support.in_process import serving

MIB = 1024 * 1024


@pytest.fixture
async def client(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RegistryClient]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    config = ServerConfig(
        listen="127.0.0.1:0",
        data_dir=tmp_path / "data",
        database_url=db_url,
        default_model_quota_bytes=2 * MIB,
    )
    async with serving(config) as running, RegistryClient(f"127.0.0.1:{running.port}") as c:
        await c.create_model("fraud")
        yield c


async def test_a_push_past_the_quota_fails_before_its_bytes_are_stored(
    client: RegistryClient, tmp_path: Path
) -> None:
    big, small = tmp_path / "big", tmp_path / "small"
    big.mkdir()
    small.mkdir()
    (big / "weights.bin").write_bytes(os.urandom(3 * MIB))
    (small / "weights.bin").write_bytes(os.urandom(MIB))
    version = (await client.create_model_version("models/fraud")).name
    with pytest.raises(ResourceExhaustedError) as exc:
        await push_files(client, version, big)
    assert exc.value.reason == "QUOTA_EXCEEDED"
    staged = tmp_path / "data" / "blobs" / "uploads"
    assert list(staged.iterdir()) == []
    result = await push_files(client, version, small)
    assert result.bytes_sent == MIB
    model = await client.get_model("models/fraud", storage_usage=True)
    assert model.storage_limit_bytes == 2 * MIB
    assert MIB < model.storage_used_bytes < MIB + 4096  # the file and its manifest
