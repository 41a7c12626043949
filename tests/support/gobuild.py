"""The repository's Go programs, built with Debian's Go toolchain in GOPATH mode.

Debian ships grpc-go and protobuf for GOPATH builds under /usr/share/gocode
(see client/go/README.md), so nothing is downloaded: a GOPATH of our own
holds the repository's Go directories at their import paths, next to it.
A cold build compiles grpc-go and takes minutes; later ones reuse Go's
build cache (its default under $HOME, else one in the temporary directory).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IMPORT_ROOT = "github.com/modelreg/modelreg"
# The repository's Go directories, linked into the GOPATH at IMPORT_ROOT/<dir>.
GO_DIRS = ("client/go", "loadtest/loadgen")
GO_PACKAGES = (
    "golang-go protobuf-compiler libprotobuf-dev protoc-gen-go protoc-gen-go-grpc "
    "golang-google-grpc-dev golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev"
)
BUILD_TIMEOUT = 900


class GoBuildError(RuntimeError):
    """`go vet` or `go build` failed; the message has the command and its stderr."""


def missing_tools(*tools: str) -> list[str]:
    return [t for t in tools if shutil.which(t) is None]


def install_hint(missing: list[str]) -> str:
    return f"{', '.join(missing)} not installed (apt-get install {GO_PACKAGES})"


def make_gopath(path: Path) -> Path:
    """`path` as a GOPATH whose src/ links the repository's Go directories
    at their import paths (again and again: links already there are kept)."""
    for rel in GO_DIRS:
        link = path / "src" / IMPORT_ROOT / rel
        if not link.is_symlink():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(ROOT / rel, target_is_directory=True)
    return path


def go_env(gopath: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": f"{gopath}:/usr/share/gocode",
        "GOFLAGS": "",
    }
    if "HOME" not in env and "GOCACHE" not in env:
        env["GOCACHE"] = str(Path(tempfile.gettempdir()) / "modelreg-go-build")
    return env


def build(
    directory: str, binary: Path, gopath: Path, *, vet: bool = True, timeout: float = BUILD_TIMEOUT
) -> Path:
    """Build the main package in `directory` (e.g. "client/go/cmd/modelreg-fetch")
    into `binary`, after `go vet` when `vet`; `gopath` from make_gopath."""
    package = f"{IMPORT_ROOT}/{directory}"
    steps = [["go", "build", "-o", str(binary), package]]
    if vet:
        steps.insert(0, ["go", "vet", package])
    for args in steps:
        done = subprocess.run(
            args,
            cwd=gopath,
            env=go_env(gopath),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise GoBuildError(f"{' '.join(args)}:\n{done.stderr}")
    return binary


def unformatted(directory: str) -> str:
    """What `gofmt -l` lists under `directory` (relative to the repository)."""
    return subprocess.run(
        ["gofmt", "-l", str(ROOT / directory)], capture_output=True, text=True, check=True
    ).stdout


def build_checked(directory: str, workdir: Path, gofmt_root: str | None = None) -> Path:
    """For a test: `directory`'s main package vetted and built in a fresh
    GOPATH under `workdir`, its sources (everything under `gofmt_root`, by
    default `directory`) gofmt-ed. Returns the binary."""
    gopath = make_gopath(workdir)
    binary = build(directory, gopath / "bin" / Path(directory).name, gopath)
    listed = unformatted(gofmt_root or directory)
    assert listed == "", f"not gofmt-ed: {listed}"
    return binary
