"""The grpcurl commands of the README's operations section work as written."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from modelregistry import RegistryClient
from support.processes import ServeProcess

ROOT = Path(__file__).resolve().parents[2]
GRPCURL = str(Path(sys.executable).parent / "grpcurl")


def documented_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- ops-grpcurl: begin -->(.*?)<!-- ops-grpcurl: end -->", text, re.S)
    assert block, "README lost its grpcurl section"
    return [line for line in block.group(1).splitlines() if line.startswith("grpcurl ")]


async def seed(address: str) -> None:
    async with RegistryClient(address) as client:
        await client.create_model("fraud")
        for _ in range(2):
            await client.create_model_version("models/fraud", source_uri="s3://b/m")
        await client.set_alias("models/fraud/aliases/production", 1)
        await client.start_rollout("models/fraud/aliases/production", 2)


def test_readme_grpcurl_commands(tmp_path: Path) -> None:
    commands = documented_commands()
    assert len(commands) >= 6
    srv = ServeProcess(tmp_path / "data")
    srv.start()
    try:
        asyncio.run(seed(srv.address))
        env = {**os.environ, "MODELREG_SERVER": srv.address}
        outputs = {}
        for command in commands:
            argv = shlex.split(command.replace("$MODELREG_SERVER", srv.address))
            done = subprocess.run(
                [GRPCURL, *argv[1:]], capture_output=True, text=True, timeout=60, env=env
            )
            streaming = "-max-time" in argv
            if not streaming:
                assert done.returncode == 0, f"{command}\n{done.stderr}"
            outputs[argv[-1]] = done.stdout
        assert "modelregistry.v1.RolloutService" in outputs["list"]
        assert "SERVING" in outputs["grpc.health.v1.Health/Check"]
        assert "models/fraud/versions/1" in outputs["modelregistry.v1.RegistryService/ResolveAlias"]
        assert '"percent": 5' in outputs["modelregistry.v1.RolloutService/ListRollouts"]
        assert "ROLLOUT_STARTED" in outputs["modelregistry.v1.EventService/ListEvents"]
        assert "ALIAS_SET" in outputs["modelregistry.v1.EventService/Watch"]
        assert "candidate_version" in outputs["modelregistry.v1.ResolveAliasResponse"]
    finally:
        srv.stop()
