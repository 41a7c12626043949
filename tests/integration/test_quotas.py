"""Storage quotas and the cap on open uploads, through the API (SQLite and
PostgreSQL): refused at start, before a byte is stored; usage shown by
GetModel; only valid quotas accepted."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import google_crc32c
import grpc
import pytest
from google.protobuf import field_mask_pb2
from modelregistry.v1 import artifact_service_pb2 as apb
from modelregistry.v1 import artifact_service_pb2_grpc, registry_service_pb2_grpc
from modelregistry.v1 import registry_service_pb2 as rpc
from modelregistry.v1 import resources_pb2 as pb
from modelregistry_server.config import ServerConfig
from support.grpc_errors import error_info, expect_error
from support.in_process import serving

MiB = 1024 * 1024
DEFAULT_QUOTA = 4 * MiB
OPEN_CAP = 3


@pytest.fixture
async def stubs(db_url: str, tmp_path: Path) -> AsyncIterator[tuple[Any, Any, Path]]:
    config = ServerConfig(
        listen="127.0.0.1:0",
        data_dir=tmp_path / "data",
        database_url=db_url,
        default_model_quota_bytes=DEFAULT_QUOTA,
        max_open_uploads_per_principal=OPEN_CAP,
    )
    async with (
        serving(config) as running,
        grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as ch,
    ):
        registry = registry_service_pb2_grpc.RegistryServiceStub(ch)
        await registry.CreateModel(rpc.CreateModelRequest(model_id="fraud"))
        yield registry, artifact_service_pb2_grpc.ArtifactServiceStub(ch), tmp_path / "data"


async def open_upload(artifacts: Any, size: int, model: str = "models/fraud") -> str:
    """Start an upload and leave it open (resumable) without sending a byte."""

    async def gen() -> AsyncIterator[apb.UploadRequest]:
        yield apb.UploadRequest(start=apb.UploadStart(size_bytes=size, model=model))

    responses = [r async for r in artifacts.Upload(gen())]
    return str(responses[0].started.upload_id)


async def upload_blob(artifacts: Any, data: bytes, **start: Any) -> str:
    """A whole blob in one stream (chunks of at most 1 MiB)."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()

    async def gen() -> AsyncIterator[apb.UploadRequest]:
        yield apb.UploadRequest(start=apb.UploadStart(size_bytes=len(data), digest=digest, **start))
        for at in range(0, len(data), MiB):
            piece = data[at : at + MiB]
            chunk = apb.UploadChunk(offset=at, data=piece, crc32c=google_crc32c.value(piece))
            yield apb.UploadRequest(chunk=chunk)
        yield apb.UploadRequest(finish=apb.UploadFinish(digest=digest))

    responses = [r async for r in artifacts.Upload(gen())]
    assert responses[-1].WhichOneof("kind") == "finished"
    return digest


def staged(data_dir: Path) -> list[str]:
    return sorted(p.name for p in (data_dir / "blobs" / "uploads").iterdir())


async def test_an_upload_past_the_quota_is_refused_before_a_byte_is_stored(
    stubs: tuple[Any, Any, Path],
) -> None:
    registry, artifacts, data_dir = stubs
    await upload_blob(artifacts, os.urandom(MiB), model="models/fraud")
    shared = os.urandom(MiB // 2)
    await upload_blob(artifacts, shared, model="models/fraud")
    # Stored blobs that no version references yet count for nothing.
    model = await registry.GetModel(
        rpc.GetModelRequest(name="models/fraud", view=rpc.MODEL_VIEW_FULL)
    )
    assert (model.storage_limit_bytes, model.storage_used_bytes) == (DEFAULT_QUOTA, 0)

    held = await open_upload(artifacts, 3 * MiB)
    model = await registry.GetModel(
        rpc.GetModelRequest(name="models/fraud", view=rpc.MODEL_VIEW_FULL)
    )
    assert model.storage_used_bytes == 3 * MiB
    # A plain read is a cached one: the quota in force, but no usage.
    basic = await registry.GetModel(rpc.GetModelRequest(name="models/fraud"))
    assert (basic.storage_limit_bytes, basic.storage_used_bytes) == (DEFAULT_QUOTA, 0)
    with pytest.raises(grpc.aio.AioRpcError) as bad_view:
        await registry.GetModel(
            rpc.GetModelRequest(name="models/fraud", view=rpc.ModelView.ValueType(7))
        )
    assert bad_view.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(bad_view.value).reason == "INVALID_FIELD"
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await open_upload(artifacts, MiB + 1)
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    info = error_info(exc.value)
    assert info.reason == "QUOTA_EXCEEDED"
    assert info.metadata["resource"] == "models/fraud"
    assert (info.metadata["limit"], info.metadata["used_bytes"]) == (
        str(DEFAULT_QUOTA),
        str(3 * MiB),
    )
    assert staged(data_dir) == [held]  # nothing staged for the refused one
    # Freeing the open upload makes room.
    await artifacts.CancelUpload(apb.CancelUploadRequest(upload_id=held))
    await open_upload(artifacts, MiB + 1)


async def test_usage_counts_each_unique_blob_of_the_versions_once(
    stubs: tuple[Any, Any, Path],
) -> None:
    registry, artifacts, _ = stubs
    weights = os.urandom(MiB)
    digest = await upload_blob(artifacts, weights, model="models/fraud")
    manifest_sizes = 0
    for n in (1, 2):
        await registry.CreateModelVersion(rpc.CreateModelVersionRequest(parent="models/fraud"))
        body = json.dumps(
            {
                "schemaVersion": 1,
                "mediaType": "application/vnd.modelreg.manifest.v1+json",
                "files": [{"path": f"w{n}.bin", "size": MiB, "digest": digest}],
            }
        ).encode()
        await upload_blob(
            artifacts,
            body,
            version=f"models/fraud/versions/{n}",
            media_type="application/vnd.modelreg.manifest.v1+json",
        )
        manifest_sizes += len(body)
    model = await registry.GetModel(
        rpc.GetModelRequest(name="models/fraud", view=rpc.MODEL_VIEW_FULL)
    )
    assert model.storage_used_bytes == MiB + manifest_sizes


async def test_quota_bounds_and_the_model_override(stubs: tuple[Any, Any, Path]) -> None:
    registry, artifacts, _ = stubs
    mask = field_mask_pb2.FieldMask(paths=["storage_quota_bytes"])
    await expect_error(
        registry.UpdateModel(
            rpc.UpdateModelRequest(
                model=pb.Model(name="models/fraud", storage_quota_bytes=5), update_mask=mask
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_FIELD",
    )
    updated = await registry.UpdateModel(
        rpc.UpdateModelRequest(
            model=pb.Model(name="models/fraud", storage_quota_bytes=64 * MiB), update_mask=mask
        )
    )
    assert updated.storage_quota_bytes == 64 * MiB
    model = await registry.GetModel(
        rpc.GetModelRequest(name="models/fraud", view=rpc.MODEL_VIEW_FULL)
    )
    assert model.storage_limit_bytes == 64 * MiB
    await open_upload(artifacts, 32 * MiB)  # past the default, within its own quota


async def test_open_uploads_per_principal_are_capped(stubs: tuple[Any, Any, Path]) -> None:
    _, artifacts, data_dir = stubs
    held = [await open_upload(artifacts, 10, model="") for _ in range(OPEN_CAP)]
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await open_upload(artifacts, 10, model="")
    assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    info = error_info(exc.value)
    assert (info.reason, info.metadata["limit"]) == ("TOO_MANY_OPEN_UPLOADS", str(OPEN_CAP))
    assert staged(data_dir) == sorted(held)
    await artifacts.CancelUpload(apb.CancelUploadRequest(upload_id=held[0]))
    await open_upload(artifacts, 10, model="")


async def test_a_blob_upload_for_an_unknown_model_is_refused(
    stubs: tuple[Any, Any, Path],
) -> None:
    _, artifacts, _ = stubs
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await open_upload(artifacts, 10, model="models/nope")
    assert exc.value.code() == grpc.StatusCode.NOT_FOUND
