"""The serving agent end to end against a real server: a 5/25/50/100 rollout
across 100 instances, instant rollback within the grace period, and a
registry outage that the fleet rides out."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from modelregistry import RegistryClient, push
from modelregistry.serving import ServingAgent, serves_candidate
from modelregistry.serving.cache import ArtifactCache
from modelregistry.v1 import rollout_service_pb2 as rrpc
from modelregistry.v1 import rollout_service_pb2_grpc
from modelregistry_server.server import Running
from support.processes import ServeProcess

INSTANCES = 100
PROD = "models/fraud/aliases/production"


def load(path: Path) -> bytes:
    return (path / "weights.bin").read_bytes()


async def make_version(client: RegistryClient, tmp: Path, content: bytes) -> str:
    version = await client.create_model_version("models/fraud")
    src = tmp / f"src-{version.version}"
    src.mkdir()
    (src / "weights.bin").write_bytes(content)
    (src / "config.json").write_text('{"layers": 2}')
    await push(client, version.name, src, state_dir=tmp / "push-state")
    return version.name


async def wait_for(check: Callable[[], bool], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


@pytest.fixture
async def client(server: Running) -> AsyncIterator[RegistryClient]:
    async with RegistryClient(f"127.0.0.1:{server.port}") as c:
        yield c


async def test_rollout_across_a_fleet_then_instant_rollback(
    client: RegistryClient, server: Running, tmp_path: Path
) -> None:
    await client.create_model("fraud")
    v1 = await make_version(client, tmp_path, b"model one")
    v2 = await make_version(client, tmp_path, b"model two")
    await client.set_alias(PROD, v1)

    history: dict[str, list[str]] = {f"pod-{i}": [] for i in range(INSTANCES)}
    reasons: dict[str, list[str]] = {instance: [] for instance in history}

    def recorder(instance: str) -> Callable[[str, dict[str, Any]], None]:
        def record(kind: str, details: dict[str, Any]) -> None:
            if kind == "live":
                history[instance].append(details["version"])
                reasons[instance].append(details["reason"])

        return record

    agents = [
        ServingAgent(
            client,
            alias=PROD,
            instance_id=instance,
            cache_dir=tmp_path / "cache" / instance,
            load=load,
            grace_period=timedelta(minutes=10),
            ttl=timedelta(minutes=5),  # the watch, not the TTL, must drive flips
            on_transition=recorder(instance),
        )
        for instance in history
    ]
    await asyncio.gather(*(a.start() for a in agents))
    try:
        assert all(a.current() == b"model one" for a in agents)
        stub = rollout_service_pb2_grpc.RolloutServiceStub(client.channel())
        rollout = await stub.StartRollout(
            rrpc.StartRolloutRequest(alias=PROD, candidate_version=v2)
        )
        on_candidate: set[str] = set()
        for step in range(4):
            percent = rollout.percent
            expected = {
                a.instance_id
                for a in agents
                if serves_candidate(rollout.name, a.instance_id, percent)
            }

            def settled(expected: set[str] = expected) -> bool:
                return all(
                    (a.current() == b"model two") == (a.instance_id in expected) for a in agents
                )

            await wait_for(settled)
            # The cohort only grows: nobody who moved to the candidate left it.
            assert on_candidate <= expected
            on_candidate = expected
            if percent == 50:
                assert 25 <= len(expected) <= 75  # about half of 100 instances
                expected_at_50 = expected
            if step < 3:
                rollout = await stub.AdvanceRollout(
                    rrpc.AdvanceRolloutRequest(name=rollout.name, etag=rollout.etag)
                )
        assert len(on_candidate) == INSTANCES
        for versions in history.values():
            assert versions in ([v1, v2],), versions  # one flip each, never back
        # Joining the cohort is a rollout step; the rest moved when it completed.
        moved = {instance: why[1] for instance, why in reasons.items()}
        assert set(moved.values()) == {"rollout", "rollout_completed"}, moved
        assert {i for i, why in moved.items() if why == "rollout"} == expected_at_50

        downloads = [a.cache.downloads for a in agents]
        # Roll back within the grace period: the old model is still loaded.
        await client.set_alias(PROD, v1)
        await wait_for(lambda: all(a.current() == b"model one" for a in agents), within=10)
        assert [a.cache.downloads for a in agents] == downloads
        status = agents[0].status()
        assert status.live_version == v1 and status.previous_version == v2
        assert status.last_revision > 0
        assert {why[-1] for why in reasons.values()} == {"rollback"}
    finally:
        await asyncio.gather(*(a.stop() for a in agents))


async def test_a_failed_download_keeps_the_old_model(
    client: RegistryClient, tmp_path: Path
) -> None:
    await client.create_model("fraud")
    v1 = await make_version(client, tmp_path, b"model one")
    v2 = await make_version(client, tmp_path, b"model two")
    await client.set_alias(PROD, v1)
    failures: list[dict[str, Any]] = []

    def picky_load(path: Path) -> bytes:
        data = load(path)
        if data == b"model two":
            raise ValueError("cannot load this one")
        return data

    agent = ServingAgent(
        client,
        alias=PROD,
        instance_id="pod-x",
        cache_dir=tmp_path / "cache",
        load=picky_load,
        ttl=timedelta(minutes=5),
        on_transition=lambda kind, d: failures.append(d) if kind == "failed" else None,
    )
    async with agent:
        await client.set_alias(PROD, v2)
        await wait_for(lambda: bool(failures))
        assert agent.current() == b"model one"
        assert failures[0]["version"] == v2


async def test_the_fleet_rides_out_a_registry_outage(tmp_path: Path) -> None:
    srv = ServeProcess(tmp_path / "data")
    srv.start()
    agents: list[ServingAgent[bytes]] = []
    try:
        async with RegistryClient(srv.address) as client:
            await client.create_model("fraud")
            v1 = await make_version(client, tmp_path, b"model one")
            v2 = await make_version(client, tmp_path, b"model two")
            await client.set_alias(PROD, v1)
        agents = [
            ServingAgent(
                srv.address,
                alias=PROD,
                instance_id=f"pod-{i}",
                cache_dir=tmp_path / "cache" / str(i),
                load=load,
                ttl=timedelta(seconds=2),
            )
            for i in range(10)
        ]
        await asyncio.gather(*(a.start() for a in agents))
        srv.kill()
        await asyncio.sleep(1.5)  # refreshes fail meanwhile; serving goes on
        assert all(a.current() == b"model one" for a in agents)
        srv.start()
        async with RegistryClient(srv.address) as client:
            # gRPC shares connections per address in a process: wait out the
            # reconnect backoff the agents' failed calls left behind.
            await asyncio.wait_for(client.channel().channel_ready(), 30)
            await client.set_alias(PROD, v2)
        await wait_for(lambda: all(a.current() == b"model two" for a in agents), within=30)
        # A restart while the registry is down serves the last version from cache.
        srv.kill()
        restarted = ServingAgent(
            srv.address,
            alias=PROD,
            instance_id="pod-0",
            cache_dir=tmp_path / "cache" / "0",
            load=load,
        )
        await restarted.start()
        assert restarted.current() == b"model two" and restarted.cache.downloads == 0
        await restarted.stop()
    finally:
        await asyncio.gather(*(a.stop() for a in agents), return_exceptions=True)
        srv.stop()


@pytest.mark.parametrize("percent", [0, 5, 50, 100])
def test_cohorts_are_stable_and_sized(percent: int) -> None:
    name = "models/fraud/rollouts/0123456789ab"
    chosen = {i for i in range(10_000) if serves_candidate(name, f"pod-{i}", percent)}
    assert abs(len(chosen) - percent * 100) <= 300
    if percent:
        smaller = {i for i in range(10_000) if serves_candidate(name, f"pod-{i}", percent // 2)}
        assert smaller <= chosen


async def test_versions_sharing_a_file_hold_its_bytes_once(
    client: RegistryClient, tmp_path: Path
) -> None:
    """Two versions with the same 4 MiB weights and different configs: the
    cache downloads and stores the weights once, and eviction frees them only
    when no cached artifact links them any more."""
    weights = os.urandom(4 << 20)
    await client.create_model("fraud")
    versions = []
    for layers in (2, 3):
        version = await client.create_model_version("models/fraud")
        src = tmp_path / f"src-{layers}"
        src.mkdir()
        (src / "weights.bin").write_bytes(weights)
        (src / "config.json").write_text(f'{{"layers": {layers}}}')
        await push(client, version.name, src, state_dir=tmp_path / "push-state")
        versions.append(await client.get_model_version(version.name))

    cache = ArtifactCache(tmp_path / "cache")
    dirs = [await cache.ensure(client, v.name, v.artifact.digest) for v in versions]
    assert [(d / "weights.bin").read_bytes() == weights for d in dirs] == [True, True]
    assert cache.bytes_received < 2 * len(weights)  # the shared file came once
    inodes = {(d / "weights.bin").stat().st_ino for d in dirs}
    assert len(inodes) == 1
    on_disk = sum(
        st.st_size
        for st in {
            (p.stat().st_dev, p.stat().st_ino): p.stat()
            for p in cache.root.rglob("*")
            if p.is_file()
        }.values()
    )
    assert len(weights) <= on_disk < 2 * len(weights)

    cache.max_bytes = 1  # evict everything not in use
    evicted = await cache.evict(in_use={versions[1].artifact.digest})
    assert evicted == [versions[0].artifact.digest]
    assert (dirs[1] / "weights.bin").read_bytes() == weights  # still linked, still there
    await cache.evict(in_use=set())
    assert not any(cache.files.iterdir())  # nothing links the shared files any more
