"""client/go/go.mod: the Go client builds in module mode at the stubs' import path.

CI builds the client in GOPATH mode against Debian's packages (no module
proxy is reachable there); the module build must use the same library
versions, so a user building with `go build ./...` gets what CI tested.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from support.services import require

ROOT = Path(__file__).resolve().parents[3]
GO_DIR = ROOT / "client" / "go"
# module path in go.mod -> Debian package that ships it under /usr/share/gocode
DEBIAN_PACKAGES = {
    "google.golang.org/grpc": "golang-google-grpc-dev",
    "google.golang.org/protobuf": "golang-google-protobuf-dev",
    "github.com/golang/protobuf": "golang-github-golang-protobuf-1-5-dev",
}


def _go_mod() -> dict[str, object]:
    if shutil.which("go") is None:
        require("go is not installed (apt-get install golang-go)")
    out = subprocess.run(
        ["go", "mod", "edit", "-json"], cwd=GO_DIR, check=True, capture_output=True, text=True
    ).stdout
    parsed: dict[str, object] = json.loads(out)
    return parsed


def test_module_path_is_the_go_package_of_every_proto() -> None:
    module = _go_mod()["Module"]
    assert isinstance(module, dict)
    packages = {
        m.group(1)
        for proto in (ROOT / "protos").rglob("*.proto")
        if (m := re.search(r'option go_package = "([^";]+)', proto.read_text()))
    }
    assert packages, "no go_package options found"
    for package in packages:
        assert package.startswith(module["Path"] + "/"), package


def test_required_versions_are_the_ones_the_gopath_build_uses() -> None:
    requires = _go_mod()["Require"]
    assert isinstance(requires, list)
    versions = {r["Path"]: r["Version"] for r in requires}
    if shutil.which("dpkg-query") is None:
        pytest.skip("not a Debian system: the GOPATH build's versions are unknown")
    for path, package in DEBIAN_PACKAGES.items():
        shown = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True
        )
        if shown.returncode != 0:
            require(f"{package} is not installed")
        upstream = re.sub(r"^\d+:", "", shown.stdout).split("-")[0].split("+")[0]
        assert versions.get(path) == f"v{upstream}", (path, versions.get(path), upstream)
