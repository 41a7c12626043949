"""The Go load generator (loadtest/loadgen/), built on demand, and its runs.

A Python gRPC client spends about as much CPU per message as the server,
so on a small machine a benchmark driven by one measures the machine. The
benchmarks' `--client go` drives the server with loadgen instead: one Go
process, built here with Debian's Go toolchain in GOPATH mode (as the tests
build the Go client) into a directory under the system's temporary
directory. The first build compiles grpc-go: minutes; later ones take a
second or two.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import common  # noqa: F401  # puts tests/support on the path
from support import gobuild

CACHE = Path(tempfile.gettempdir()) / f"modelreg-loadgen-{os.getuid()}"


class LoadgenUnavailable(RuntimeError):
    """No Go toolchain, or loadgen does not build."""


@functools.cache
def binary() -> Path:
    """loadgen's path, built (or brought up to date) once per process."""
    if missing := gobuild.missing_tools("go"):
        raise LoadgenUnavailable(
            f"--client go needs the Go toolchain: {gobuild.install_hint(missing)}"
        )
    gopath = gobuild.make_gopath(CACHE / "gopath")
    out = CACHE / "bin" / "loadgen"
    # A run already using loadgen keeps its copy: the new one replaces the name.
    part = out.with_name(f"loadgen.{os.getpid()}")
    print("building loadtest/loadgen (the first time: minutes)", file=sys.stderr, flush=True)
    try:
        gobuild.build("loadtest/loadgen", part, gopath, vet=False)
    except (gobuild.GoBuildError, subprocess.TimeoutExpired) as exc:
        raise LoadgenUnavailable(str(exc)) from exc
    part.replace(out)
    return out


def require() -> Path:
    """binary(), or exit with the reason and what to install: for a bench's
    start, before it sets up a server."""
    try:
        return binary()
    except LoadgenUnavailable as exc:
        sys.exit(str(exc))


def read_line(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """The next JSON line loadgen prints; RuntimeError if it ended (its
    stderr is the caller's)."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"loadgen exited with {proc.wait()}")
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def start(*args: str) -> subprocess.Popen[str]:
    """loadgen ARGS, its stdin and stdout piped."""
    return subprocess.Popen(
        [str(binary()), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def stop(proc: subprocess.Popen[str]) -> None:
    """Kill `proc` if it still runs, and reap it."""
    if proc.poll() is None:
        proc.kill()
    proc.communicate()
