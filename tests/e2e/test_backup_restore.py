"""`modelreg admin backup` and `restore`: a registry brought up from a backup
answers the same aliases, versions, events and artifacts; a second backup
copies only new blobs; a restore never overwrites a database."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from modelregistry import RegistryClient
from support.moto import s3_env
from support.postgres import fresh_database
from support.processes import ServeProcess, modelreg


def storage_flags(data_dir: Path, database_url: str) -> list[str]:
    return ["--data-dir", str(data_dir), "--database-url", database_url]


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def write_model(root: Path, seed: bytes) -> Path:
    root.mkdir(parents=True)
    (root / "weights.bin").write_bytes(seed * (300_000 // len(seed)))
    (root / "config.json").write_bytes(b'{"seed": "' + seed.hex().encode() + b'"}')
    return root


async def build(address: str, model_dir: Path) -> None:
    async with RegistryClient(address) as client:
        await client.create_model("fraud")
        await client.create_model_version("models/fraud")
        await client.push("models/fraud/versions/1", model_dir)
        await client.create_model_version("models/fraud", source_uri="s3://runs/fraud/2")
        await client.set_alias("models/fraud/aliases/production", 1)
        await client.set_alias("models/fraud/aliases/staging", 2)


async def snapshot_view(address: str, pull_to: Path) -> dict[str, object]:
    async with RegistryClient(address) as client:
        versions = [
            (v.name, v.state, v.artifact.digest, v.etag)
            async for v in client.list_model_versions("models/fraud")
        ]
        aliases = [(a.name, a.version, a.etag) async for a in client.list_aliases("models/fraud")]
        events = [(e.revision, e.hash) async for e in client.list_events(page_size=1000)]
        await client.pull("models/fraud/aliases/production", pull_to)
    return {"versions": versions, "aliases": aliases, "events": events}


def view(address: str, pull_to: Path) -> dict[str, object]:
    seen = asyncio.run(snapshot_view(address, pull_to))
    return {**seen, "files": {p.name: p.read_bytes() for p in pull_to.iterdir()}}


@pytest.fixture
def target_url(db_url: str, tmp_path: Path) -> Iterator[str]:
    """Where the restore goes: a new SQLite file, or a new PostgreSQL database."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'restored' / 'registry.db'}"
        return
    server = db_url.rsplit("/", 1)[0]
    with fresh_database(server, prefix="modelreg_restored") as url:
        yield url


def test_restore_brings_back_everything(db_url: str, target_url: str, tmp_path: Path) -> None:
    source_dir = tmp_path / "source"
    dest = tmp_path / "backup"
    srv = ServeProcess(source_dir, "--database-url", db_url)
    srv.start()
    try:
        asyncio.run(build(srv.address, write_model(tmp_path / "model", b"fraud-v1")))
        before = view(srv.address, tmp_path / "pulled-before")
        first = ok(modelreg("admin", "backup", str(dest), *storage_flags(source_dir, db_url)))
        # manifest + two files: all copied the first time, none the second.
        assert "3 referenced blobs: 3 blobs copied" in first
        second = ok(modelreg("admin", "backup", str(dest), *storage_flags(source_dir, db_url)))
        assert "3 referenced blobs: 0 blobs copied (0.0 MiB), 3 already there" in second
        head = re.search(r"head (\d+:[0-9a-f]{64})", second)
        assert head is not None
    finally:
        srv.stop()

    restored_dir = tmp_path / "restored"
    restore = modelreg("admin", "restore", str(dest), *storage_flags(restored_dir, target_url))
    assert "event chain verified" in ok(restore)
    assert "3 blobs copied" in restore.stdout
    srv = ServeProcess(restored_dir, "--database-url", target_url)
    srv.start()
    try:
        after = view(srv.address, tmp_path / "pulled-after")
        assert after == before
        verified = modelreg("--server", srv.address, "events", "verify", "--expect", head[1])
        assert verified.returncode == 0, verified.stdout + verified.stderr
    finally:
        srv.stop()

    again = modelreg("admin", "restore", str(dest), *storage_flags(restored_dir, target_url))
    assert again.returncode == 1
    assert "restore failed" in again.stderr and "new database" in again.stderr


def test_a_damaged_or_incomplete_backup_is_refused(tmp_path: Path) -> None:
    source_dir = tmp_path / "source"
    url = f"sqlite:///{source_dir / 'registry.db'}"
    dest = tmp_path / "backup"
    with_nothing = modelreg("admin", "restore", str(dest), *storage_flags(tmp_path / "r0", url))
    assert with_nothing.returncode == 1 and "no complete backup" in with_nothing.stderr
    srv = ServeProcess(source_dir)
    srv.start()
    try:
        asyncio.run(build(srv.address, write_model(tmp_path / "model", b"fraud-v1")))
    finally:
        srv.stop()
    ok(modelreg("admin", "backup", str(dest), *storage_flags(source_dir, url)))
    blob = next(p for p in (dest / "blobs").rglob("*") if p.is_file())
    os.chmod(blob, 0o600)
    blob.write_bytes(blob.read_bytes()[:-1] + b"!")
    target = tmp_path / "r1"
    bad = modelreg(
        "admin", "restore", str(dest), *storage_flags(target, f"sqlite:///{target / 'r.db'}")
    )
    assert bad.returncode == 1 and "restore failed" in bad.stderr


class Writer:
    """Creates versions of one model one after another until told to stop,
    and remembers which creates were acknowledged."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.acked: list[int] = []
        self.stop = threading.Event()

    async def _run(self) -> None:
        async with RegistryClient(self.address) as client:
            await client.create_model("busy")
            while not self.stop.is_set():
                v = await client.create_model_version("models/busy", source_uri="s3://runs/x")
                self.acked.append(v.version)
                await client.set_alias("models/busy/aliases/latest", v.version)

    def run(self) -> None:
        asyncio.run(self._run())


async def versions_of(address: str, model: str) -> list[int]:
    async with RegistryClient(address) as client:
        return [v.version async for v in client.list_model_versions(model)]


def test_a_backup_taken_during_writes_is_a_prefix_of_them(
    db_url: str, target_url: str, tmp_path: Path
) -> None:
    source_dir = tmp_path / "source"
    dest = tmp_path / "backup"
    srv = ServeProcess(source_dir, "--database-url", db_url)
    srv.start()
    writer = Writer(srv.address)
    thread = threading.Thread(target=writer.run)
    thread.start()
    try:
        while len(writer.acked) < 20:
            time.sleep(0.05)
        acked_before = len(writer.acked)
        ok(modelreg("admin", "backup", str(dest), *storage_flags(source_dir, db_url)))
        acked_after = len(writer.acked)
    finally:
        writer.stop.set()
        thread.join(timeout=30)
        srv.stop()
    assert acked_after > acked_before, "no write ran during the backup"

    restored_dir = tmp_path / "restored"
    ok(modelreg("admin", "restore", str(dest), *storage_flags(restored_dir, target_url)))
    srv = ServeProcess(restored_dir, "--database-url", target_url)
    srv.start()
    try:
        restored = sorted(asyncio.run(versions_of(srv.address, "models/busy")))
        verified = modelreg("--server", srv.address, "events", "verify")
        assert verified.returncode == 0, verified.stdout + verified.stderr
    finally:
        srv.stop()
    # Every write acknowledged before the backup began is there, and what is
    # there is a prefix of the writes (at most the one in flight at the end).
    assert restored == list(range(1, len(restored) + 1))
    assert acked_before <= len(restored) <= acked_after + 1


def test_backup_from_one_bucket_restores_into_another(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = str(request.getfixturevalue("moto_endpoint"))
    s3_env(monkeypatch, tmp_path)  # the children inherit these
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint)
    buckets = [f"dr-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    for bucket in buckets:
        s3.create_bucket(Bucket=bucket)

    def flags(data_dir: Path, bucket: str) -> list[str]:
        url = f"sqlite:///{data_dir / 'registry.db'}"
        store = ["--blob-store", f"s3://{bucket}/registry", "--s3-endpoint-url", endpoint]
        return [*storage_flags(data_dir, url), *store]

    source_dir, restored_dir, dest = tmp_path / "source", tmp_path / "restored", tmp_path / "b"
    srv = ServeProcess(source_dir, *flags(source_dir, buckets[0])[2:])
    srv.start()
    try:
        asyncio.run(build(srv.address, write_model(tmp_path / "model", b"fraud-s3")))
        before = view(srv.address, tmp_path / "pulled-before")
    finally:
        srv.stop()
    ok(modelreg("admin", "backup", str(dest), *flags(source_dir, buckets[0])))
    restored = ok(modelreg("admin", "restore", str(dest), *flags(restored_dir, buckets[1])))
    assert "3 blobs copied" in restored
    srv = ServeProcess(restored_dir, *flags(restored_dir, buckets[1])[2:])
    srv.start()
    try:
        assert view(srv.address, tmp_path / "pulled-after") == before
    finally:
        srv.stop()


def test_an_encrypted_blob_store_is_refused_with_a_reason(tmp_path: Path) -> None:
    """Encrypted blobs do not hash to their digests as stored; a backup must
    neither half copy them nor decrypt them into the backup directory."""
    keyring = tmp_path / "keyring.json"
    ok(modelreg("keyring", "create", str(keyring)))
    source_dir = tmp_path / "source"
    url = f"sqlite:///{source_dir / 'registry.db'}"
    srv = ServeProcess(source_dir, "--encryption-keyring", str(keyring))
    srv.start()
    try:
        asyncio.run(build(srv.address, write_model(tmp_path / "model", b"secret-v1")))
    finally:
        srv.stop()
    dest = tmp_path / "backup"
    refused = modelreg("admin", "backup", str(dest), *storage_flags(source_dir, url))
    assert refused.returncode == 1
    assert "encrypted blobs" in refused.stderr
    assert not any(p.is_file() for p in (dest / "blobs").rglob("*"))
    assert not (dest / "LATEST").exists()
