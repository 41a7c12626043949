"""A `modelreg serve` child process for tests: fixed port and data directory,
so it can be killed and started again as the same server."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

CLI = [sys.executable, "-m", "modelregistry.cli.main"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A `modelreg serve` child on a fixed port and data directory, restartable."""

    def __init__(self, data_dir: Path, *extra: str) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.args = [
            *CLI,
            "serve",
            "--listen",
            self.address,
            "--data-dir",
            str(data_dir),
            "--log-level",
            "WARNING",
            *extra,
        ]
        self.log = data_dir.parent / f"serve-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, within: float = 60) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=log)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                with grpc.insecure_channel(self.address) as ch:
                    reply = health_pb2_grpc.HealthStub(ch).Check(
                        health_pb2.HealthCheckRequest(), timeout=1
                    )
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
        raise AssertionError("server did not become SERVING:\n" + self.log.read_text()[-3000:])

    def peak_rss_kb(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@contextlib.contextmanager
def running(data_dir: Path, *extra: str) -> Iterator[Server]:
    """A started server, stopped afterwards."""
    server = Server(data_dir, *extra)
    server.start()
    try:
        yield server
    finally:
        server.stop()
