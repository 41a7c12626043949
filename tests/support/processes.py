"""`modelreg` as processes: the command line, and `modelreg serve` children
that tests and benchmarks start, wait for, kill and start again."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from support.ports import free_port
from support.procfs import status_kb

CLI_MODULE = "modelregistry.cli.main"
# `modelreg` with this interpreter: the venv's, whatever is on PATH.
CLI = [sys.executable, "-m", CLI_MODULE]


def wait_serving(
    address: str,
    proc: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
    within: float = 60,
) -> None:
    """Block until the health service at `address` says SERVING; RuntimeError,
    with the end of `log`, when `proc` exits first or `within` seconds pass."""

    def tail() -> str:
        return log.read_text(errors="replace")[-3000:] if log is not None else ""

    deadline = time.monotonic() + within
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}:\n{tail()}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"{address} not SERVING after {within:g} s:\n{tail()}")


class ServeProcess:
    """A `modelreg serve` child on a fixed port and data directory, so it can
    be killed and started again as the same server.

    With `own_session` a Ctrl-C meant for the caller (a benchmark) does not
    reach it: it stops when the caller's clean-up says so. Its output goes to
    `log`, beside the data directory.
    """

    def __init__(
        self,
        data_dir: Path,
        *extra: str,
        database_url: str | None = None,
        command: Sequence[str] = CLI,
        own_session: bool = False,
    ) -> None:
        """`extra` flags go last, after --listen, --data-dir, --log-level WARNING,
        --workers 1 (one process, whose pid is the server's; `extra` may
        say otherwise) and --database-url (when given: else the embedded
        SQLite default)."""
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.args = [
            *command,
            "serve",
            *("--listen", self.address, "--data-dir", str(data_dir)),
            *("--log-level", "WARNING"),
            *("--workers", "1"),
            *(("--database-url", database_url) if database_url else ()),
            *extra,
        ]
        self.log = data_dir.parent / f"serve-{self.port}.log"
        self.own_session = own_session
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def launch(self) -> None:
        """Start the process and return at once (see `wait_serving`)."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.args, stdout=log, stderr=log, start_new_session=self.own_session
            )

    def wait_serving(self, within: float = 60) -> None:
        wait_serving(self.address, self.proc, self.log, within)

    def start(self, within: float = 60) -> None:
        """Start the process and wait until it is SERVING."""
        self.launch()
        self.wait_serving(within)

    def peak_rss_kb(self) -> int:
        """The server's peak resident memory so far (VmHWM)."""
        return status_kb(self.pid, "VmHWM")

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed or drained."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM (a graceful drain), SIGKILL if it takes over 20 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def running(
    data_dir: Path | None = None,
    *extra: str,
    database_url: str | None = None,
    command: Sequence[str] = CLI,
    own_session: bool = False,
    within: float = 60,
) -> Iterator[ServeProcess]:
    """A started server, stopped afterwards. Without `data_dir` it gets a
    temporary directory (data and log), removed afterwards."""
    temporary = None
    if data_dir is None:
        temporary = Path(tempfile.mkdtemp(prefix="modelreg-serve-"))
        data_dir = temporary / "data"
    server = ServeProcess(
        data_dir, *extra, database_url=database_url, command=command, own_session=own_session
    )
    try:
        server.start(within)
        yield server
    finally:
        server.stop()
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)


def modelreg(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`modelreg ARGS` run to completion, its output captured as text; the
    exit status is the caller's to check."""
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
