"""S3 for tests: a moto server process, and an environment that points the
AWS SDKs at nothing but it."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.ports import free_port, port_open
from support.services import require


@contextlib.contextmanager
def moto_server(log: Path, tls: tuple[Path, Path] | None = None) -> Iterator[str]:
    """A moto S3 server process on a free loopback port; yields its endpoint
    URL (https with `tls`, a certificate and key file). If it does not come
    up, the test is skipped or fails (`require`)."""
    port = free_port()
    serve_tls = ["--ssl-cert", str(tls[0]), "--ssl-key", str(tls[1])] if tls else []
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port), *serve_tls],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while not port_open("127.0.0.1", port):
            if proc.poll() is not None or time.monotonic() > deadline:
                require(f"the moto S3 server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def s3_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Credentials for moto, and nothing from the machine's own AWS setup."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
