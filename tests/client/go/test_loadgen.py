"""loadtest/loadgen, the benchmarks' Go load generator, against a real
`modelreg serve` process: it builds (vet and gofmt clean), its watchers get
each promotion once and in order, and its unary clients count calls and
status codes as the benchmarks read them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from modelregistry.client import RegistryClient
from support import gobuild
from support.services import require

pytestmark = pytest.mark.timeout(gobuild.BUILD_TIMEOUT + 120)


@pytest.fixture(scope="module")
def loadgen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if missing := gobuild.missing_tools("go", "gofmt"):
        require(gobuild.install_hint(missing))
    return gobuild.build_checked("loadtest/loadgen", tmp_path_factory.mktemp("gopath"))


async def _line(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    assert proc.stdout is not None
    raw = await asyncio.wait_for(proc.stdout.readline(), 60)
    assert raw, f"loadgen ended with {await proc.wait()}"
    parsed: dict[str, Any] = json.loads(raw)
    return parsed


async def _run(binary: Path, *args: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(str(binary), *args, stdout=asyncio.subprocess.PIPE)
    try:
        result = await _line(proc)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        return result
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_watchers_get_every_promotion_once_in_order(loadgen: Path, address: str) -> None:
    alias = "models/lg-watch/aliases/production"
    async with RegistryClient(address) as client:
        await client.create_model("lg-watch")
        for _ in range(2):
            await client.create_model_version("models/lg-watch", source_uri="s3://b/m")
        await client.set_alias(alias, 1)
        proc = await asyncio.create_subprocess_exec(
            str(loadgen),
            *("watch", "--target", address, "--resource", alias),
            *("--watchers", "5", "--per-channel", "2", "--expected", "2", "--timeout", "60s"),
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            opened = await _line(proc)
            assert opened["open"] == 5
            await client.set_alias(alias, 2)
            await client.set_alias(alias, 1)
            result = await _line(proc)
            assert await asyncio.wait_for(proc.wait(), 30) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert result["failures"] == []
    assert len(result["events"]) == 5
    revisions = [[r for r, _, _ in w] for w in result["events"]]
    assert revisions[0][0] < revisions[0][1]
    assert revisions == [revisions[0]] * 5
    for w in result["events"]:
        for _, committed_us, received_us in w:
            assert 0 <= received_us - committed_us < 60_000_000


async def test_unary_clients_count_calls_and_status_codes(
    loadgen: Path, address: str, tmp_path: Path
) -> None:
    async with RegistryClient(address) as client:
        await client.create_model("lg-read")
        await client.create_model_version("models/lg-read", source_uri="s3://b/m")
        await client.set_alias("models/lg-read/aliases/production", 1)
    (tmp_path / "models").write_text("models/lg-read\n")
    (tmp_path / "aliases").write_text(
        "models/lg-read/aliases/production\nmodels/lg-read/aliases/x\n"
    )
    common = ("--target", address, "--clients", "3", "--calls", "20")

    got = await _run(
        loadgen, "read", *common, "--method", "GetModel", "--names", f"{tmp_path}/models"
    )
    assert (got["calls"], got["errors"], len(got["latency_ms"])) == (20, {}, 20)
    assert got["elapsed_s"] > 0 and min(got["latency_ms"]) > 0

    aliases = ("--names", f"{tmp_path}/aliases")
    got = await _run(loadgen, "read", *common, "--method", "ResolveAlias", *aliases)
    assert got["calls"] == 20 and set(got["errors"]) == {"NOT_FOUND"}
    assert 0 < got["errors"]["NOT_FOUND"] < 20, "names are picked at random from the file"

    got = await _run(loadgen, "write", *common, "--method", "SetAlias", *aliases, "--versions", "1")
    assert got["calls"] == 20 and set(got["errors"]) <= {"NOT_FOUND", "ABORTED"}
