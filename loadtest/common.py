"""Shared pieces of the load tests: the seeded fleet's shape, tiny artifacts as
upload streams, and a `modelreg serve` child on a fresh database.

The scripts here import it as `common`: Python (and Locust, for the
locustfile) puts the script's own directory first on the module path.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import google_crc32c
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from modelregistry.manifest import MEDIA_TYPE, Manifest, ManifestFile
from modelregistry.v1 import artifact_service_pb2 as apb

CLI = [sys.executable, "-m", "modelregistry.cli.main"]
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432"


@dataclass(frozen=True)
class Fleet:
    """The seed's example fleet: `models` models of `versions` versions each.

    Per model: versions 1..`versions` (at least 3); version `artifact_version`
    (at most `versions` - 2) carries a small managed artifact, the others
    are READY through a `source_uri`.
    `production` (protected: approved versions only) points at the artifact
    version and `staging` at the one after it; every version but the newest
    is approved. The first `rollouts` models have a production rollout in
    progress towards `staging`'s version. Release engineers work on the first
    `hot` models; downloads go to the others, whose production alias stays
    on the artifact version.
    """

    models: int = 500
    versions: int = 10
    prefix: str = "fleet"
    hot: int = 20
    rollouts: int = 5
    artifact_version: int = 8

    def model_id(self, i: int) -> str:
        return f"{self.prefix}-{i:04d}"

    def model(self, i: int) -> str:
        return f"models/{self.model_id(i)}"

    def version(self, i: int, v: int) -> str:
        return f"{self.model(i)}/versions/{v}"

    def alias(self, i: int, alias: str) -> str:
        return f"{self.model(i)}/aliases/{alias}"

    @property
    def staging_version(self) -> int:
        return self.artifact_version + 1

    @property
    def approved_versions(self) -> range:
        """Versions approved by the seed: all but the newest."""
        return range(1, self.versions)

    @property
    def cold(self) -> range:
        """Models no release engineer touches (all of them if every one is hot)."""
        return range(self.hot, self.models) if self.hot < self.models else range(self.models)


# --- tiny artifacts as Upload streams ------------------------------------------------


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def artifact_bytes(label: str, size: int = 4096) -> bytes:
    """Deterministic, distinct content for `label` (a version name, a run id)."""
    seed = hashlib.sha256(label.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def blob_requests(
    data: bytes, *, version: str = "", media_type: str = ""
) -> list[apb.UploadRequest]:
    """A whole upload of a small blob in one chunk: start, chunk, finish.

    If the server already has the blob it answers `started` then `finished`
    at once and ignores the rest, so the same messages serve both cases.
    """
    digest = digest_of(data)
    start = apb.UploadStart(
        size_bytes=len(data), digest=digest, version=version, media_type=media_type
    )
    chunk = apb.UploadChunk(offset=0, data=data, crc32c=google_crc32c.value(data))
    return [
        apb.UploadRequest(start=start),
        apb.UploadRequest(chunk=chunk),
        apb.UploadRequest(finish=apb.UploadFinish(digest=digest)),
    ]


def manifest_requests(version: str, path: str, data: bytes) -> list[apb.UploadRequest]:
    """Publishing `data` as the single file `path` of `version` (its manifest)."""
    files = (ManifestFile(path=path, size_bytes=len(data), digest=digest_of(data)),)
    body = Manifest(files=files).to_json()
    return blob_requests(body, version=version, media_type=MEDIA_TYPE)


def finished_version(responses: list[apb.UploadResponse]) -> apb.UploadFinished:
    """The `finished` message of an upload's responses (AssertionError if none)."""
    for r in responses:
        if r.WhichOneof("kind") == "finished":
            return r.finished
    raise AssertionError("the upload stream ended without `finished`")


# --- a server to test -----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_serving(address: str, proc: subprocess.Popen[bytes] | None, log: Path | None) -> None:
    """Block until the health service says SERVING (RuntimeError after 60 s or on exit)."""

    def tail() -> str:
        return log.read_text(errors="replace")[-3000:] if log is not None else ""

    deadline = time.monotonic() + 60
    with grpc.insecure_channel(address) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
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
    raise RuntimeError(f"{address} not SERVING after 60 s:\n{tail()}")


@contextlib.contextmanager
def fresh_pg_database(pg: str = DEFAULT_PG, prefix: str = "modelreg_load") -> Iterator[str]:
    """A new, empty PostgreSQL database on server `pg`; dropped afterwards."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{pg}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{pg}/{name}"
    finally:
        with psycopg.connect(f"{pg}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Server:
    address: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


@contextlib.contextmanager
def serve(database_url: str | None = None, log_level: str = "WARNING") -> Iterator[Server]:
    """`modelreg serve` on a free loopback port, in its own session, SERVING
    when this yields; SIGTERM (then SIGKILL) and its data directory removed after.
    Without `database_url` it runs on the embedded SQLite default."""
    tmp = Path(tempfile.mkdtemp(prefix="modelreg-load-"))
    address = f"127.0.0.1:{free_port()}"
    log = tmp / "server.log"
    cmd = [*CLI, "serve", "--listen", address, "--log-level", log_level]
    cmd += ["--data-dir", str(tmp / "data")]
    if database_url:
        cmd += ["--database-url", database_url]
    proc = None
    try:
        with log.open("wb") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=out, start_new_session=True, env=os.environ.copy()
            )
        wait_serving(address, proc, log)
        yield Server(address, proc, log)
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
