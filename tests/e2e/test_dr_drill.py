"""The recovery drill in miniature (scripts/dr_drill.sh on a small fleet), so
that it cannot rot: it seeds, backs up, destroys, restores and checks every
model, version, alias, event and artifact, and prints the recovery time."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_drill_restores_and_verifies_everything(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # On PostgreSQL, as in production (test_backup_restore covers SQLite);
    # pg_url skips, or fails when required, without a PostgreSQL server.
    request.getfixturevalue("pg_url")
    cmd = [str(ROOT / "scripts" / "dr_drill.sh"), "--database", "postgresql"]
    cmd += ["--work", str(tmp_path)]
    cmd += ["--models", "12", "--artifact-kib", "512"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=290)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "checked 12 models, 120 versions, 24 aliases" in done.stdout
    assert "downloaded and verified 12 artifacts" in done.stdout
    assert "1 expected heads hold" in done.stdout
    assert re.search(r"destroyed -> serving and verified: [\d.]+ s", done.stdout)
