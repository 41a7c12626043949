"""The load test in miniature, so that it cannot rot: loadtest/run.py starts
`modelreg serve` on SQLite, seeds a small fleet and runs every Locust user
class for a few seconds; every main RPC must show up, none may fail."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAIN_RPCS = {
    "ResolveAlias",
    "ListRollouts",
    "CreateModelVersion",
    "Upload",
    "Upload (manifest)",
    "ApproveModelVersion",
    "SetAlias",
    "Download",
    "Download (blob)",
    "Watch (open)",
}


@pytest.mark.timeout(180)
def test_loadtest_smoke(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "loadtest" / "run.py"), "--sqlite", "--out", str(out)]
    cmd += ["--models", "8", "--versions", "3", "--hot", "3", "--rollouts", "2"]
    cmd += ["--users", "12", "--spawn-rate", "12", "--time", "6", "--resolve-every", "0.5"]
    cmd += ["--", "--watchers", "2", "--watch-hold", "3", "--engineer-every", "0.3"]
    cmd += ["--pipeline-every", "1", "--download-every", "0.5"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stdout + done.stderr

    with (out / "u12_stats.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["Name"] != "Aggregated"]
    rpcs = {r["Name"].split(" (lost race)")[0].split(" (rollout in progress)")[0] for r in rows}
    assert rpcs >= MAIN_RPCS, f"missing: {MAIN_RPCS - rpcs}"
    failed = {r["Name"]: r["Failure Count"] for r in rows if int(r["Failure Count"])}
    assert not failed, (out / "u12_failures.csv").read_text()
    with (out / "u12_exceptions.csv").open(newline="") as f:
        assert not list(csv.DictReader(f)), (out / "u12_exceptions.csv").read_text()

    summary = (out / "summary.md").read_text()
    assert "| ResolveAlias |" in summary and "read p95" in summary
    assert (out / "latency.png").read_bytes().startswith(b"\x89PNG")
