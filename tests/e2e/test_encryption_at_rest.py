"""Encryption at rest, black box: `modelreg serve --encryption-keyring` processes, the CLI,
and nothing but the bytes they leave on disk and in the bucket.

Pushed files are made of a marker string; after pushes (and an upload left
half done, so staging is looked at too) the marker appears in no file under
the data directory and no object in the bucket. Rotation goes through the
real commands: push, rotate, push, rewrap, restart with only the new key.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import google_crc32c
import grpc
import pytest
from modelregistry.v1 import artifact_service_pb2 as apb
from modelregistry.v1 import artifact_service_pb2_grpc
from support.moto import s3_env
from support.processes import ServeProcess, modelreg

MIB = 1024 * 1024
MARKER = b"secret-weights-7f3a91c2-"


@dataclass
class Registry:
    data: Path
    keyring: Path
    home: Path
    extra: list[str]
    bucket_objects: Any  # () -> list of (key, bytes), or None for a local store

    def serve(self, keyring: Path | None = None) -> ServeProcess:
        srv = ServeProcess(
            self.data,
            *self.extra,
            "--encryption-keyring",
            str(keyring or self.keyring),
            "--log-level",
            "INFO",
        )
        srv.start()
        return srv

    def cli(self, srv: ServeProcess, *args: str) -> Any:
        env = {**os.environ, "MODELREG_SERVER": srv.address, "XDG_CACHE_HOME": str(self.home)}
        return modelreg(*args, env=env, timeout=120)

    def ok(self, srv: ServeProcess, *args: str) -> Any:
        done = self.cli(srv, *args)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout) if args[:2] == ("--output", "json") else done

    def stored(self) -> list[tuple[str, bytes]]:
        """Every file under the data directory, and every object in the bucket."""
        files = [(str(p), p.read_bytes()) for p in sorted(self.data.rglob("*")) if p.is_file()]
        return files + (self.bucket_objects() if self.bucket_objects else [])


@pytest.fixture(params=["local", "s3"])
def registry(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Registry]:
    keyring = tmp_path / "keyring.json"
    created = modelreg("keyring", "create", str(keyring))
    assert created.returncode == 0, created.stderr
    extra: list[str] = []
    objects = None
    if request.param == "s3":
        import boto3

        endpoint = str(request.getfixturevalue("moto_endpoint"))
        s3_env(monkeypatch, tmp_path)  # the children inherit these
        bucket = f"enc-{uuid.uuid4().hex[:8]}"
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket=bucket)
        kms_key = boto3.client("kms", endpoint_url=endpoint).create_key()["KeyMetadata"]["KeyId"]
        extra = [
            *("--blob-store", f"s3://{bucket}/registry", "--s3-endpoint-url", endpoint),
            *("--s3-sse", "aws:kms", "--s3-sse-kms-key-id", kms_key),
        ]

        def objects() -> list[tuple[str, bytes]]:
            found = []
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for obj in page.get("Contents", []):
                    body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
                    found.append((obj["Key"], body))
            return found

    yield Registry(tmp_path / "data", keyring, tmp_path / "cache", extra, objects)


def marked_model(root: Path, size: int) -> Path:
    (root / "weights").mkdir(parents=True)
    (root / "weights" / "shard-0.bin").write_bytes((MARKER * (size // len(MARKER) + 1))[:size])
    (root / "config.json").write_bytes(MARKER + b'{"layers": 3}')
    return root


def push(reg: Registry, srv: ServeProcess, model: str, tree: Path) -> str:
    reg.cli(srv, "models", "create", model)  # may exist already
    version: str = reg.ok(srv, "--output", "json", "versions", "create", model)["name"]
    reg.ok(srv, "push", version, str(tree))
    return version


def pull(reg: Registry, srv: ServeProcess, version: str, out: Path) -> Any:
    return reg.cli(srv, "pull", version.removeprefix("models/"), str(out))


async def leave_half_an_upload(address: str) -> int:
    """Send marked chunks until some are acknowledged durable, then drop the stream."""
    acknowledged = 0
    async with grpc.aio.insecure_channel(address) as channel:
        stub = artifact_service_pb2_grpc.ArtifactServiceStub(channel)
        stream: Any = stub.Upload()  # type: ignore[call-arg]
        await stream.write(apb.UploadRequest(start=apb.UploadStart(size_bytes=64 * MIB)))
        await stream.read()

        async def read_acks() -> None:
            nonlocal acknowledged
            while (msg := await stream.read()) is not grpc.aio.EOF:  # type: ignore[attr-defined]
                acknowledged = msg.progress.committed_offset

        reader = asyncio.create_task(read_acks())
        data = (MARKER * (MIB // len(MARKER) + 1))[: MIB - 333]
        offset = 0
        while acknowledged == 0 and offset + len(data) <= 64 * MIB:
            chunk = apb.UploadChunk(offset=offset, data=data, crc32c=google_crc32c.value(data))
            await stream.write(apb.UploadRequest(chunk=chunk))
            offset += len(data)
            await asyncio.sleep(0.05)
        stream.cancel()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    return acknowledged


async def test_no_plaintext_on_disk_or_in_the_bucket(registry: Registry, tmp_path: Path) -> None:
    srv = registry.serve()
    try:
        tree = marked_model(tmp_path / "model", 5 * MIB + 3)
        version = push(registry, srv, "secret", tree)
        acknowledged = await leave_half_an_upload(srv.address)
        assert acknowledged > 0
        out = tmp_path / "pulled"
        assert pull(registry, srv, version, out).returncode == 0
        assert MARKER in (out / "weights" / "shard-0.bin").read_bytes()[: 10 * len(MARKER)]
    finally:
        srv.stop()
    stored = registry.stored()
    assert len(stored) >= 3
    for name, data in stored:
        assert MARKER[:12] not in data, f"plaintext in {name}"
    if registry.bucket_objects is None:
        modes = {p.stat().st_mode & 0o777 for p in (registry.data / "blobs").rglob("*")}
        assert modes <= {0o700, 0o600, 0o400}


def _only_key(keyring: Path, key_id: str, into: Path) -> Path:
    doc = json.loads(keyring.read_text())
    doc["keys"] = [k for k in doc["keys"] if k["id"] == key_id]
    doc["primary"] = key_id
    fd = os.open(into, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f)
    return into


def _primary(keyring: Path) -> str:
    return str(json.loads(keyring.read_text())["primary"])


@pytest.mark.parametrize("registry", ["local"], indirect=True)
def test_push_rotate_push_rewrap_restart_with_only_the_new_key(
    registry: Registry, tmp_path: Path
) -> None:
    old_key = _primary(registry.keyring)
    srv = registry.serve()
    try:
        first = push(registry, srv, "rot", marked_model(tmp_path / "m1", 3 * MIB))
    finally:
        srv.stop()

    rotated = modelreg("keyring", "rotate", str(registry.keyring))
    assert rotated.returncode == 0, rotated.stderr
    new_key = _primary(registry.keyring)
    assert new_key != old_key
    srv = registry.serve()
    try:
        second = push(registry, srv, "rot", marked_model(tmp_path / "m2", 2 * MIB + 5))
    finally:
        srv.stop()

    # Before the rewrap, the old blobs still need the old key: a clear refusal.
    new_only = _only_key(registry.keyring, new_key, tmp_path / "new-only.json")
    srv = registry.serve(new_only)
    try:
        refused = pull(registry, srv, first, tmp_path / "refused")
        assert refused.returncode != 0
        assert "ENCRYPTION_KEY_MISSING" in refused.stderr and old_key in refused.stderr
    finally:
        srv.stop()
    census = [line for line in srv.log.read_text().splitlines() if "needed_key_ids" in line]
    assert census and old_key in json.loads(census[-1])["missing_key_ids"]

    dry = modelreg(
        "admin", "rewrap", "--data-dir", str(registry.data),
        "--encryption-keyring", str(registry.keyring), "--dry-run",
    )  # fmt: skip
    assert dry.returncode == 0 and "would rewrap" in dry.stdout, dry.stderr
    done = modelreg(
        "admin", "rewrap", "--data-dir", str(registry.data),
        "--encryption-keyring", str(registry.keyring),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # The first push: shard, config, manifest; the second: a new shard and manifest.
    assert done.stdout.startswith("rewrapped 3 blobs; 2 already under the primary key")

    srv = registry.serve(new_only)
    try:
        for version, tree in ((first, tmp_path / "m1"), (second, tmp_path / "m2")):
            out = tmp_path / "out" / version.replace("/", "_")
            got = pull(registry, srv, version, out)
            assert got.returncode == 0, got.stderr
            for path in tree.rglob("*"):
                if path.is_file():
                    assert (out / path.relative_to(tree)).read_bytes() == path.read_bytes()
    finally:
        srv.stop()
    census = [line for line in srv.log.read_text().splitlines() if "needed_key_ids" in line]
    line = json.loads(census[-1])
    assert line["missing_key_ids"] == "" and old_key not in line["needed_key_ids"]


@pytest.mark.parametrize("registry", ["local"], indirect=True)
def test_a_flipped_bit_on_disk_is_data_loss_not_wrong_bytes(
    registry: Registry, tmp_path: Path
) -> None:
    srv = registry.serve()
    try:
        version = push(registry, srv, "flip", marked_model(tmp_path / "m", 3 * MIB))
        blobs = sorted(
            (p for p in (registry.data / "blobs" / "blobs").rglob("*") if p.is_file()),
            key=lambda p: p.stat().st_size,
        )
        largest = blobs[-1]
        stored = bytearray(largest.read_bytes())
        stored[len(stored) // 2] ^= 0x01
        os.chmod(largest, 0o600)
        largest.write_bytes(bytes(stored))
        got = pull(registry, srv, version, tmp_path / "out")
        assert got.returncode != 0
        assert "BLOB_DAMAGED" in got.stderr
        assert not (tmp_path / "out" / "weights" / "shard-0.bin").exists()
    finally:
        srv.stop()


@pytest.mark.parametrize("registry", ["local"], indirect=True)
def test_a_server_without_the_keyring_refuses_an_encrypted_store(registry: Registry) -> None:
    registry.serve().stop()  # marks the store as encrypted
    plain = ServeProcess(registry.data, *registry.extra)
    with pytest.raises(RuntimeError, match="exited with 1"):
        plain.start()
    assert "start with --encryption-keyring" in plain.log.read_text()
