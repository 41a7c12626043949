"""Who may start how: no open registry on the network unless asked for by name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from modelregistry_server.access_setup import (
    AccessSettings,
    RefusedConfiguration,
    check,
    is_loopback,
)
from modelregistry_server.api.gate import AuthMode
from modelregistry_server.auth.jwt_verifier import JwtSettings

JWT = JwtSettings("/jwks.json", "https://idp", "modelreg")
CLI = [sys.executable, "-m", "modelregistry.cli.main"]


def test_loopback_addresses() -> None:
    for listen in ("127.0.0.1:50051", "localhost:1", "[::1]:50051", "127.0.0.2:0"):
        assert is_loopback(listen), listen
    for listen in ("0.0.0.0:50051", "[::]:50051", "10.0.0.5:50051", "registry:50051"):
        assert not is_loopback(listen), listen


def test_auth_off_only_on_loopback_unless_asked() -> None:
    check(AccessSettings(AuthMode.OFF, "127.0.0.1:50051"))
    with pytest.raises(RefusedConfiguration, match="--insecure-allow-anonymous"):
        check(AccessSettings(AuthMode.OFF, "0.0.0.0:50051"))
    check(AccessSettings(AuthMode.OFF, "0.0.0.0:50051", insecure_allow_anonymous=True))


def test_auth_required_needs_a_way_in() -> None:
    with pytest.raises(RefusedConfiguration, match="--jwt-jwks"):
        check(AccessSettings(AuthMode.REQUIRED, "0.0.0.0:50051"))
    check(AccessSettings(AuthMode.REQUIRED, "0.0.0.0:50051", jwt=JWT))
    check(AccessSettings(AuthMode.REQUIRED, "0.0.0.0:50051", client_certificates=True))
    with pytest.raises(RefusedConfiguration, match="--jwt-issuer"):
        check(AccessSettings(AuthMode.REQUIRED, "0.0.0.0:1", jwt=JwtSettings("/j", "", "")))
    with pytest.raises(RefusedConfiguration, match="bootstrap-admin"):
        check(AccessSettings(AuthMode.REQUIRED, "0.0.0.0:1", jwt=JWT, bootstrap_admins=("root",)))


def test_serve_refuses_an_open_registry_off_loopback(tmp_path: Path) -> None:
    done = subprocess.run(
        [*CLI, "serve", "--listen", "0.0.0.0:0", "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "refusing to serve 0.0.0.0:0 without authentication" in done.stderr
    assert "--insecure-allow-anonymous" in done.stderr
