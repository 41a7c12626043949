"""Pulling over parallel ranged streams: the same verified files as one
stream, a resume from the verified prefix a ranged run noted, and the
stream count chosen by size and cores."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from modelregistry import RegistryClient, pull, push_files
from modelregistry.artifacts import PARTIAL_DIR
from modelregistry.downloads import PREFIX_SUFFIX
from modelregistry.manifest import digest_of
from modelregistry.ranged_downloads import MIN_RANGE_BYTES, auto_streams
from modelregistry_server.server import Running

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def client(server: Running) -> AsyncIterator[RegistryClient]:
    async with RegistryClient(f"127.0.0.1:{server.port}") as c:
        yield c


async def pushed(client: RegistryClient, tmp_path: Path, data: bytes) -> str:
    await client.create_model("ranged")
    name = (await client.create_model_version("models/ranged")).name
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.bin").write_bytes(data)
    await push_files(client, name, tmp_path / "model", state_dir=tmp_path / "state")
    return name


async def test_ranged_pull_writes_the_same_verified_file(
    client: RegistryClient, tmp_path: Path
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    name = await pushed(client, tmp_path, data)
    seen: list[int] = []
    result = await pull(
        client, name, tmp_path / "out", progress=lambda done, *_: seen.append(done), streams=3
    )
    assert (tmp_path / "out" / "weights.bin").read_bytes() == data
    assert result.bytes_received == len(data)
    assert seen[-1] == len(data)
    assert not (tmp_path / "out" / PARTIAL_DIR).exists(), "no partial file or note is left"


async def test_ranged_pull_resumes_from_the_noted_prefix_only(
    client: RegistryClient, tmp_path: Path
) -> None:
    """A killed ranged run leaves holes past its noted prefix: only the
    prefix counts, the rest is fetched again."""
    data = os.urandom(2 * 1024 * 1024)
    name = await pushed(client, tmp_path, data)
    partial_dir = tmp_path / "out" / PARTIAL_DIR
    partial_dir.mkdir(parents=True)
    partial = partial_dir / digest_of(data).removeprefix("sha256:")
    good = 700_000
    partial.write_bytes(data[:good] + bytes(len(data) - good))  # zeros: a hole
    partial.with_name(partial.name + PREFIX_SUFFIX).write_text(str(good))
    result = await pull(client, name, tmp_path / "out", streams=2)
    assert (tmp_path / "out" / "weights.bin").read_bytes() == data
    assert result.resumed_bytes == good
    assert result.bytes_received == len(data) - good


def test_stream_count_follows_size_and_cores() -> None:
    assert auto_streams(10 * 1024 * 1024, cores=16) == 1
    assert auto_streams(3 * MIN_RANGE_BYTES, cores=16) == 3
    assert auto_streams(100 * MIN_RANGE_BYTES, cores=16) == 4
    assert auto_streams(100 * MIN_RANGE_BYTES, cores=2) == 1


async def test_push_uploads_several_files_at_once(client: RegistryClient, tmp_path: Path) -> None:
    files = {f"part-{i}.bin": os.urandom(300_000 + i) for i in range(5)}
    (tmp_path / "model").mkdir()
    for path, data in files.items():
        (tmp_path / "model" / path).write_bytes(data)
    await client.create_model("many")
    name = (await client.create_model_version("models/many")).name
    seen: list[tuple[int, int]] = []
    result = await push_files(
        client,
        name,
        tmp_path / "model",
        progress=lambda done, total, _: seen.append((done, total)),
        state_dir=tmp_path / "state",
        streams=3,
    )
    total = sum(len(d) for d in files.values())
    assert result.bytes_sent == result.total_bytes == total
    assert seen[-1] == (total, total)
    assert all(done <= total for done, _ in seen)
    await pull(client, name, tmp_path / "out", streams=2)
    assert {p: (tmp_path / "out" / p).read_bytes() for p in files} == files
