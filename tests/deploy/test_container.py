"""deploy/Containerfile, built and run with buildah.

No base image can be pulled here, so the test assembles one the way its
default base is made: a minimal Debian with Python (debootstrap from the
machine's own apt sources), imported once and kept in buildah's storage.
The image is then built from the repository as an operator would, and its
own entrypoint and health check are run (chroot isolation: this machine's
container runtime cannot create cgroups, so the process runs without a
runtime's namespaces, but from the image's files, as the image's user).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from modelregistry.sync import SyncRegistryClient
from support.ports import free_port
from support.services import require

# Assembling the base image the first time takes minutes (debootstrap).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
ROOT = Path(__file__).resolve().parents[2]
BASE = "localhost/modelreg-test-base:bookworm"
IMAGE = "localhost/modelreg:test"
# No runtime namespaces (see above), the host's loopback.
BUILDAH_RUN = ("buildah", "run", "--isolation", "chroot", "--network", "host")
DEV_TOOLS = ("pytest", "ruff", "mypy", "locust", "moto", "grpcio-tools", "matplotlib")


def run(*args: str, timeout: float = 600, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )


def debian_mirror() -> str:
    """The first Debian archive apt uses on this machine."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        match = re.search(r"^URIs:\s*(\S+)", sources.read_text(), re.MULTILINE)
        if match:
            return match.group(1)
    for line in Path("/etc/apt/sources.list").read_text().splitlines():
        parts = line.split()
        if parts[:1] == ["deb"]:
            return next(p for p in parts[1:] if "://" in p)
    raise AssertionError("no Debian archive in apt's sources")


def ensure_base(tmp: Path) -> None:
    if run("buildah", "inspect", "--type", "image", BASE).returncode == 0:
        return
    if shutil.which("debootstrap") is None:
        require("debootstrap is not installed (apt-get install debootstrap)")
    rootfs = tmp / "rootfs"
    made = run(
        "debootstrap",
        "--variant=minbase",
        "--include=python3,python3-venv,ca-certificates",
        "bookworm",
        str(rootfs),
        debian_mirror(),
        timeout=900,
    )
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
    archive = tmp / "rootfs.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(rootfs, arcname=".")
    ctr = run("buildah", "from", "scratch").stdout.strip()
    try:
        assert run("buildah", "add", ctr, str(archive), "/").returncode == 0
        assert run("buildah", "config", "--cmd", "/bin/bash", ctr).returncode == 0
        committed = run("buildah", "commit", ctr, BASE)
        assert committed.returncode == 0, committed.stderr
    finally:
        run("buildah", "rm", ctr)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The built image's configuration."""
    if shutil.which("buildah") is None:
        require("buildah is not installed (apt-get install buildah)")
    ensure_base(tmp_path_factory.mktemp("base"))
    build = [
        "buildah",
        "bud",
        "--isolation",
        "chroot",
        "--network",
        "host",
        "--format",
        "docker",
        "--layers=false",
        "--build-arg",
        f"BASE_IMAGE={BASE}",
        "-f",
        "deploy/Containerfile",
        "-t",
        IMAGE,
    ]
    # This machine's pip settings for reaching the package index, if any.
    for name in ("PIP_INDEX_URL", "PIP_CERT"):
        if os.environ.get(name):
            build += ["--build-arg", f"{name}={os.environ[name]}"]
    if os.environ.get("PIP_CERT"):
        cert_dir = str(Path(os.environ["PIP_CERT"]).parent)
        build += ["--volume", f"{cert_dir}:{cert_dir}:ro"]
    built = run(*build, ".", cwd=ROOT, timeout=900)
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    inspected = run("buildah", "inspect", "--type", "image", IMAGE)
    try:
        yield dict(json.loads(inspected.stdout)["Docker"]["config"])
    finally:
        run("buildah", "rmi", IMAGE)


@pytest.fixture
def container(image: dict[str, Any]) -> Iterator[str]:
    ctr = run("buildah", "from", IMAGE).stdout.strip()
    assert ctr
    try:
        yield ctr
    finally:
        run("buildah", "rm", ctr)


def in_container(ctr: str, *command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return run(
        *BUILDAH_RUN,
        ctr,
        "--",
        *command,
        timeout=timeout,
    )


def http_status(url: str) -> int:
    """The HTTP status of a GET, 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def test_image_is_slim_non_root_and_serves_health(
    image: dict[str, Any], container: str, tmp_path: Path
) -> None:
    # Non-root, `modelreg serve` as the entrypoint, gRPC health as the check.
    assert image["User"] == "10001:10001"
    assert image["Entrypoint"] == ["modelreg", "serve"]
    assert set(image["ExposedPorts"]) == {"50051/tcp", "9090/tcp"}
    health = image["Healthcheck"]["Test"]
    assert health[:1] == ["CMD"] and "modelregistry_server.probe" in health

    # Only the server extra: none of the development or load-test tools.
    listed = in_container(container, "pip", "list", "--format", "json")
    installed = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert {"grpcio", "sqlalchemy", "prometheus_client", "modelreg"} <= installed
    assert not installed & set(DEV_TOOLS)

    # The image's own command line, on ports of this test's choosing.
    grpc_port, metrics_port = free_port(), free_port()
    command = [*image["Entrypoint"], *image["Cmd"]]
    command = [
        f"127.0.0.1:{grpc_port}"
        if arg == "0.0.0.0:50051"
        else f"127.0.0.1:{metrics_port}"
        if arg == "0.0.0.0:9090"
        else arg
        for arg in command
    ]
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                *BUILDAH_RUN,
                container,
                "--",
                *command,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        probe = [*health[1:], "--address", f"127.0.0.1:{grpc_port}"]
        deadline = time.monotonic() + 90
        while in_container(container, *probe).returncode != 0:
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(1)
        # The probe reached one worker; /readyz turns 200 once every worker
        # serves, as a load balancer polling it would see.
        while (status := http_status(f"http://127.0.0.1:{metrics_port}/readyz")) != 200:
            assert status in (0, 503), status
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        # The non-root user can write its data directory: a write lands.
        with SyncRegistryClient(f"127.0.0.1:{grpc_port}") as client:
            assert client.create_model("fraud").name == "models/fraud"

        # SIGTERM to the server drains and stops it cleanly.
        servers = [
            pid
            for pid in descendants(proc.pid)
            if "serve" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            and Path(f"/proc/{pid}/status").read_text().count("10001") >= 1
        ]
        assert servers, "no server process running as uid 10001"
        os.kill(servers[-1], signal.SIGTERM)
        proc.wait(timeout=60)
        assert '"message": "stopped"' in log.read_text()
    finally:
        if proc.poll() is None:
            for pid in descendants(proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.kill()
            proc.wait()
