"""The chaos soak in miniature, so that it cannot rot: a minute of mixed
load through the SDK while the server is SIGKILLed and PostgreSQL restarted
(a cluster of the soak's own); every acknowledged write survives, the chain
verifies, no upload is stuck and the clients recover by themselves."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.services import require

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_soak_smoke() -> None:
    if shutil.which("initdb") is None and not list(
        Path("/usr/lib/postgresql").glob("*/bin/initdb")
    ):
        require("PostgreSQL's initdb is not installed")
    cmd = [sys.executable, str(ROOT / "loadtest" / "soak.py"), "--duration", "60"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "PASS" in done.stdout
