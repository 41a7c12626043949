"""The serving agent with `verify=`: only versions whose signature verifies,
under keys the fleet holds, against the files on disk are ever loaded; any
other keeps the old model serving and is reported."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from modelregistry import RegistryClient
from modelregistry.serving import ServingAgent
from modelregistry.signing import Trust
from modelregistry_server.server import Running
from support.signing import KeyPair, make_key, sign_dir, write_model

PROD = "models/fraud/aliases/production"


@pytest.fixture
async def client(server: Running) -> AsyncIterator[RegistryClient]:
    async with RegistryClient(f"127.0.0.1:{server.port}") as c:
        yield c


async def wait_for(check: Callable[[], bool], within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def signed_version(
    client: RegistryClient, tmp_path: Path, weights: bytes, key: KeyPair
) -> tuple[str, Path]:
    version = await client.create_model_version("models/fraud")
    model = write_model(
        tmp_path / f"src-{version.version}", {"weights.bin": weights, "config.json": b"{}"}
    )
    await client.push(version.name, model, state_dir=tmp_path / "push-state")
    bundle = sign_dir(model, key.private, tmp_path / f"{version.version}.sig")
    await client.attach_signature(version.name, bundle)
    return version.name, model


async def test_an_agent_loads_only_versions_that_verify_and_keeps_serving_otherwise(
    client: RegistryClient, tmp_path: Path
) -> None:
    fleet, other = make_key(tmp_path, "fleet"), make_key(tmp_path, "other")
    await client.create_model("fraud")
    await client.update_trust_policy("fraud", trusted_keys=[fleet.public_pem, other.public_pem])
    v1, _ = await signed_version(client, tmp_path, b"one" * 1000, fleet)
    v2, _ = await signed_version(client, tmp_path, b"two" * 1000, other)
    tampered = os.urandom(3000)
    v3, _ = await signed_version(client, tmp_path, tampered, fleet)
    v4, _ = await signed_version(client, tmp_path, b"four" * 1000, fleet)
    await client.set_alias(PROD, v1)

    seen: list[tuple[str, dict[str, Any]]] = []
    agent = ServingAgent(
        client,
        alias=PROD,
        instance_id="pod-0",
        cache_dir=tmp_path / "cache",
        load=lambda path: (path / "weights.bin").read_bytes(),
        on_transition=lambda kind, details: seen.append((kind, details)),
        ttl=timedelta(seconds=1),
        verify=Trust.from_key_files(fleet.public),
    )
    async with agent:
        assert agent.current() == b"one" * 1000
        assert any(k == "verified" and d["version"] == v1 for k, d in seen)

        # Signed, but not by a key this fleet trusts: never loaded.
        await client.set_alias(PROD, v2)
        await wait_for(lambda: any(k == "rejected" and d["version"] == v2 for k, d in seen))
        assert agent.current() == b"one" * 1000
        assert agent.status().live_version == v1

        # Signed by the fleet's key, but its file was altered in the blob store.
        hexdigest = hashlib.sha256(tampered).hexdigest()
        stored = next(p for p in (tmp_path / "data").rglob(hexdigest) if p.is_file())
        stored.chmod(0o644)
        stored.write_bytes(b"x" * len(tampered))
        await client.set_alias(PROD, v3)
        await wait_for(lambda: any(k == "failed" and d["version"] == v3 for k, d in seen))
        assert agent.current() == b"one" * 1000

        await client.set_alias(PROD, v4)
        await wait_for(lambda: agent.status().live_version == v4)
        assert agent.current() == b"four" * 1000
        assert any(k == "verified" and d["version"] == v4 for k, d in seen)
    assert not any(k == "live" and d["version"] in (v2, v3) for k, d in seen)
