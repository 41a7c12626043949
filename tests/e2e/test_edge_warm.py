"""Warm ahead of promotion, with edges as separate processes: starting a
rollout makes every edge fetch the candidate's artifact before anyone asks,
the primary shows each region's state in GetRollout and `modelreg rollouts
get`, and a step that requires warm edges waits for the lagging ones."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from pathlib import Path

import pytest
from modelregistry import RegistryClient
from modelregistry.errors import RegistryError
from modelregistry.v1 import resources_pb2 as pb
from modelregistry.v1.error_reasons import ErrorMetadataKey, ErrorReason
from support.processes import ServeProcess, modelreg

ALIAS = "models/fraud/aliases/production"


def _blob_path(data_dir: Path, digest: str) -> Path:
    hexdigest = digest.removeprefix("sha256:")
    return data_dir / "blobs" / "blobs" / "sha256" / hexdigest[:2] / hexdigest


async def _version_with_file(client: RegistryClient, tmp_path: Path, n: int) -> str:
    """Version `n` with a 2 MiB file; returns the file's digest."""
    model_dir = tmp_path / f"model-{n}"
    model_dir.mkdir()
    data = os.urandom(2 * 1024 * 1024)
    (model_dir / "weights.bin").write_bytes(data)
    await client.create_model_version("models/fraud")
    await client.push(f"models/fraud/versions/{n}", model_dir)
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def _regions(client: RegistryClient, rollout: str) -> dict[str, bool]:
    return {s.region: s.warm for s in (await client.get_rollout(rollout)).warm_regions}


@pytest.mark.timeout(300)
async def test_rollout_start_warms_every_edge_and_gates_the_step(tmp_path: Path) -> None:
    primary = ServeProcess(tmp_path / "primary", "--shutdown-grace", "1")
    primary.start()
    edges = {
        region: ServeProcess(
            tmp_path / region,
            *("--upstream", primary.address, "--region", region, "--shutdown-grace", "1"),
            *extra,
        )
        for region, extra in (("eu-west", ()), ("us-east", ()), ("ap-south", ("--warm-on", "none")))
    }
    try:
        for edge in edges.values():
            edge.launch()
        for edge in edges.values():
            edge.wait_serving()
        async with RegistryClient(primary.address) as client:
            await client.create_model("fraud")
            await _version_with_file(client, tmp_path, 1)
            candidate_file = await _version_with_file(client, tmp_path, 2)
            await client.set_alias(ALIAS, 1)
            rollout = await client.start_rollout(ALIAS, "models/fraud/versions/2")

            deadline = time.monotonic() + 60
            while (await _regions(client, rollout.name)) != {
                "eu-west": True,
                "us-east": True,
                "ap-south": False,
            }:
                assert time.monotonic() < deadline, await _regions(client, rollout.name)
                await asyncio.sleep(0.2)
            # Warm means on the edge's own disk, before any instance asked.
            for region in ("eu-west", "us-east"):
                assert _blob_path(tmp_path / region, candidate_file).exists()
            assert not _blob_path(tmp_path / "ap-south", candidate_file).exists()

            # The step waits for the region that is not warm, and names it.
            with pytest.raises(RegistryError) as refused:
                await client.advance_rollout(rollout.name, require_warm=True)
            assert refused.value.reason == ErrorReason.NOT_WARM.name
            assert refused.value.metadata[ErrorMetadataKey.REGIONS.value] == "ap-south"
            assert (await client.get_rollout(rollout.name)).percent == rollout.percent

            shown = modelreg("--server", primary.address, "rollouts", "get", rollout.name)
            assert shown.returncode == 0, shown.stderr
            fields = dict(line.split(None, 1) for line in shown.stdout.splitlines() if " " in line)
            shown_regions = {
                fields[f"warm_regions[{i}].region"].strip(): fields.get(
                    f"warm_regions[{i}].warm", "False"
                ).strip()
                for i in range(3)
            }
            assert shown_regions == {"ap-south": "False", "eu-west": "True", "us-east": "True"}
            shown = modelreg(
                "--server", primary.address, "-o", "json", "rollouts", "get", rollout.name
            )
            regions = json.loads(shown.stdout)["warm_regions"]
            assert {r["region"]: r.get("warm", False) for r in regions}["eu-west"] is True

            # A step that does not ask for warm edges goes ahead.
            advanced = await client.advance_rollout(rollout.name)
            assert advanced.percent > rollout.percent
            assert advanced.state == pb.Rollout.ACTIVE
    finally:
        for edge in edges.values():
            edge.stop()
        primary.stop()
