"""Every way an upload can fail leaves it resumable or gone, never half of
each: GetUpload and a resumed Upload agree, and a gone upload's staged
bytes are freed."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import pytest
from integration.test_artifacts_api import (
    MANIFEST_TYPE,
    chunks,
    crc,
    digest_of,
    finish,
    run_upload,
    start,
)
from modelregistry.v1 import artifact_service_pb2 as apb
from modelregistry.v1 import artifact_service_pb2_grpc
from modelregistry.v1 import registry_service_pb2 as rpc
from modelregistry.v1 import resources_pb2 as pb
from modelregistry_server.server import Running
from support.grpc_errors import reason

if TYPE_CHECKING:
    from modelregistry.v1.artifact_service_pb2_grpc import ArtifactServiceAsyncStub
    from modelregistry.v1.registry_service_pb2_grpc import RegistryServiceAsyncStub

DATA = os.urandom(3000)
RIGHT, WRONG = digest_of(DATA), digest_of(b"other")


@pytest.fixture
def artifacts(channel: grpc.aio.Channel) -> ArtifactServiceAsyncStub:
    return artifact_service_pb2_grpc.ArtifactServiceStub(channel)


def _manifest(files: list[dict[str, object]]) -> bytes:
    return json.dumps({"schemaVersion": 1, "files": files}).encode()


MISSING_FILE = _manifest([{"path": "a", "size": 1, "digest": "sha256:" + "1" * 64}])
BAD_PATH = _manifest([{"path": "CON", "size": 1, "digest": "sha256:" + "1" * 64}])


async def _fail(
    stub: ArtifactServiceAsyncStub, requests: list[apb.UploadRequest]
) -> tuple[str, str]:
    """Run a failing upload: (its upload id, the reason it failed with)."""
    call = stub.Upload(iter(requests))
    started = await call.read()
    assert isinstance(started, apb.UploadResponse)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        while await call.read() is not grpc.aio.EOF:  # type: ignore[attr-defined]
            pass
    return started.started.upload_id, reason(exc.value)


def _staged(data_dir: Path) -> set[str]:
    return {p.name for p in (data_dir / "blobs" / "uploads").iterdir()}


@pytest.mark.parametrize(
    ("case", "expected_reason", "resumable"),
    [
        ("finish before the last byte", "SIZE_MISMATCH", True),
        ("bad chunk checksum", "CHECKSUM_MISMATCH", True),
        ("chunk at the wrong offset", "UNEXPECTED_OFFSET", True),
        ("finish digest differs from start", "DIGEST_MISMATCH", False),
        ("bytes do not hash to the digest", "DIGEST_MISMATCH", False),
        ("manifest lists a missing file", "MANIFEST_BLOB_MISSING", False),
        ("manifest no client can write", "INVALID_MANIFEST", False),
    ],
)
async def test_a_failed_upload_is_resumable_or_gone(
    server: Running,
    tmp_path: Path,
    artifacts: ArtifactServiceAsyncStub,
    registry: RegistryServiceAsyncStub,
    case: str,
    expected_reason: str,
    resumable: bool,
) -> None:
    size = len(DATA)
    if case == "finish before the last byte":
        requests = [start(size_bytes=size), *list(chunks(DATA, size=1000))[:2], finish()]
    elif case == "bad chunk checksum":
        bad = apb.UploadChunk(offset=1000, data=DATA[1000:2000], crc32c=crc(b"x"))
        requests = [start(size_bytes=size), *list(chunks(DATA, size=1000))[:1]]
        requests.append(apb.UploadRequest(chunk=bad))
    elif case == "chunk at the wrong offset":
        requests = [start(size_bytes=size), *list(chunks(DATA, size=1000))[1:2]]
    elif case == "finish digest differs from start":
        requests = [start(size_bytes=size, digest=RIGHT), *chunks(DATA), finish(WRONG)]
    elif case == "bytes do not hash to the digest":
        requests = [start(size_bytes=size), *chunks(DATA), finish(WRONG)]
    else:
        body = MISSING_FILE if case == "manifest lists a missing file" else BAD_PATH
        await registry.CreateModel(rpc.CreateModelRequest(model_id="m"))
        version = await registry.CreateModelVersion(
            rpc.CreateModelVersionRequest(parent="models/m", model_version=pb.ModelVersion())
        )
        requests = [
            start(size_bytes=len(body), version=version.name, media_type=MANIFEST_TYPE),
            *chunks(body),
            finish(),
        ]
    upload_id, got = await _fail(artifacts, requests)
    assert got == expected_reason
    data_dir = tmp_path / "data"
    if resumable:
        status = await artifacts.GetUpload(apb.GetUploadRequest(upload_id=upload_id))
        assert upload_id in _staged(data_dir)
        at = status.committed_offset
        done = await run_upload(
            artifacts, [start(upload_id=upload_id), *chunks(DATA, offset=at), finish(RIGHT)]
        )
        assert done[-1].finished.blob.digest == RIGHT
    else:
        for call in (
            artifacts.GetUpload(apb.GetUploadRequest(upload_id=upload_id)),
            run_upload(artifacts, [start(upload_id=upload_id)]),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as exc:
                await call
            assert reason(exc.value) == "UPLOAD_NOT_FOUND"
        assert upload_id not in _staged(data_dir)
