"""Cached reads: a replica's own writes are visible at once, another
replica's as soon as their events reach it (well before the cache TTL)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from modelregistry import RegistryClient
from modelregistry.v1 import resources_pb2 as pb
from modelregistry_server.config import ServerConfig
from modelregistry_server.server import Running
from support.in_process import start_server

PROD = "models/fraud/aliases/production"


@pytest.fixture
async def two_replicas(pg_url: str, tmp_path: Path) -> AsyncIterator[tuple[Running, Running]]:
    config = ServerConfig(
        listen="127.0.0.1:0", data_dir=tmp_path, database_url=pg_url, read_cache_s=300
    )
    a = await start_server(config)
    b = await start_server(config)
    try:
        yield a, b
    finally:
        await a.stop(grace=1)
        await b.stop(grace=1)


async def test_reads_follow_writes_on_both_replicas(
    two_replicas: tuple[Running, Running],
) -> None:
    a, b = two_replicas
    async with (
        RegistryClient(f"127.0.0.1:{a.port}") as on_a,
        RegistryClient(f"127.0.0.1:{b.port}") as on_b,
    ):
        await on_a.create_model("fraud")
        for _ in range(3):
            await on_a.create_model_version("models/fraud", source_uri="s3://b/m")
        await on_a.set_alias(PROD, 1)
        # Fill both caches.
        for client in (on_a, on_b):
            for _ in range(3):
                resolved = await client.resolve_alias(PROD)
                assert resolved.model_version.version == 1
        for version in (2, 3):
            await on_a.set_alias(PROD, version)
            # Read-your-writes on the replica that wrote.
            assert (await on_a.resolve_alias(PROD)).model_version.version == version
            assert (await on_a.get_alias(PROD)).version.endswith(f"/{version}")
            # The other replica catches up within moments, not the 300 s TTL.
            deadline = time.monotonic() + 5
            while (await on_b.resolve_alias(PROD)).model_version.version != version:
                assert time.monotonic() < deadline, "replica b kept serving a stale alias"
                await asyncio.sleep(0.02)
        model = await on_a.get_model("models/fraud")
        updated = await on_b.update_model(
            model.__class__(name="models/fraud", description="changed on b"), ["description"]
        )
        assert (await on_b.get_model("models/fraud")).description == "changed on b"
        deadline = time.monotonic() + 5
        while (await on_a.get_model("models/fraud")).etag != updated.etag:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)


async def _versions(client: RegistryClient, filter: str = "") -> list[int]:
    page = await client.list_model_versions_page("models/fraud", filter=filter, page_size=2)
    return [v.version for v in page.model_versions]


async def test_version_listings_follow_writes_on_both_replicas(
    two_replicas: tuple[Running, Running],
) -> None:
    """Listing pages are cached too, and dropped like the reads above: a new
    version and a changed state show at once where written, and on the other
    replica within moments."""
    a, b = two_replicas
    async with (
        RegistryClient(f"127.0.0.1:{a.port}") as on_a,
        RegistryClient(f"127.0.0.1:{b.port}") as on_b,
    ):
        await on_a.create_model("fraud")
        for _ in range(2):
            await on_a.create_model_version("models/fraud", source_uri="s3://b/m")
        for client in (on_a, on_b):
            for _ in range(2):  # the second read is served from the cache
                assert await _versions(client) == [2, 1]
                assert await _versions(client, "state = READY") == [2, 1]
        await on_a.create_model_version("models/fraud", source_uri="s3://b/m")
        assert await _versions(on_a) == [3, 2]
        v2 = await on_b.get_model_version("models/fraud/versions/2")
        v2.state = pb.ModelVersion.ARCHIVED
        await on_b.update_model_version(v2, ["state"])
        assert await _versions(on_b, "state = READY") == [3, 1]
        deadline = time.monotonic() + 5
        while (await _versions(on_b), await _versions(on_a, "state = READY")) != (
            [3, 2],
            [3, 1],
        ):
            assert time.monotonic() < deadline, "a replica kept serving a stale listing"
            await asyncio.sleep(0.02)
