"""`modelreg` promotion commands against a `modelreg serve` process:
approvals, protected aliases, atomic promotion and a rollout to 100 %."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from support.processes import modelreg


def run(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return modelreg("--server", address, *args)


def ok(address: str, *args: str) -> Any:
    done = run(address, *args, "-o", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_approve_protect_promote_and_roll_out(address: str, tmp_path: Path) -> None:
    ok(address, "models", "create", "fraud")
    for _ in range(3):
        ok(address, "versions", "create", "fraud", "--source-uri", "s3://b/m")
    ok(address, "models", "update", "fraud", "--protected-alias", "production")
    refused = run(address, "aliases", "set", "fraud/aliases/production", "1")
    assert refused.returncode == 6 and "VERSION_NOT_APPROVED" in refused.stderr
    for n in (1, 2):
        approved = ok(address, "versions", "approve", f"fraud/versions/{n}", "--comment", "ok")
        assert approved["approval"]["state"] == "APPROVED"
    aliases = ok(address, "promote", "fraud", "production=1", "previous=1")
    assert [a["version"] for a in aliases] == ["models/fraud/versions/1"] * 2

    rollout = ok(address, "rollouts", "start", "fraud/aliases/production", "2", "--steps", "10,100")
    assert (rollout["percent"], rollout["state"]) == (10, "ACTIVE")
    resolved = ok(address, "resolve", "fraud/aliases/production")
    assert resolved["rollout"]["name"] == rollout["name"]
    stale = run(address, "rollouts", "pause", rollout["name"], "--etag", "1-99")
    assert stale.returncode == 5 and "ETAG_MISMATCH" in stale.stderr
    done = ok(address, "rollouts", "advance", rollout["name"], "--etag", rollout["etag"])
    assert (done["percent"], done["state"]) == (100, "COMPLETED")
    resolved = ok(address, "resolve", "fraud/aliases/production")
    assert resolved["model_version"]["name"] == "models/fraud/versions/2"
    listed = run(address, "rollouts", "list", "fraud")
    assert listed.returncode == 0 and "COMPLETED" in listed.stdout
