"""ArtifactService over a real server: chunks, checksums, resume, dedup, manifests."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

import google_crc32c
import grpc
import pytest
from modelregistry.v1 import artifact_service_pb2 as apb
from modelregistry.v1 import artifact_service_pb2_grpc
from modelregistry.v1 import registry_service_pb2 as rpc
from modelregistry.v1 import resources_pb2 as pb
from modelregistry_server.server import Running
from support.grpc_errors import error_info

if TYPE_CHECKING:
    from modelregistry.v1.artifact_service_pb2_grpc import ArtifactServiceAsyncStub
    from modelregistry.v1.registry_service_pb2_grpc import RegistryServiceAsyncStub

MANIFEST_TYPE = "application/vnd.modelreg.manifest.v1+json"
CHUNK = 256 * 1024


@pytest.fixture
def artifacts(channel: grpc.aio.Channel) -> ArtifactServiceAsyncStub:
    return artifact_service_pb2_grpc.ArtifactServiceStub(channel)


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def crc(data: bytes) -> int:
    return int(google_crc32c.value(data))


def start(**kwargs: Any) -> apb.UploadRequest:
    return apb.UploadRequest(start=apb.UploadStart(**kwargs))


def chunks(data: bytes, offset: int = 0, size: int = CHUNK) -> Iterable[apb.UploadRequest]:
    for i in range(offset, len(data), size):
        piece = data[i : i + size]
        yield apb.UploadRequest(chunk=apb.UploadChunk(offset=i, data=piece, crc32c=crc(piece)))


def finish(digest: str = "") -> apb.UploadRequest:
    return apb.UploadRequest(finish=apb.UploadFinish(digest=digest))


async def run_upload(
    stub: ArtifactServiceAsyncStub, requests: Iterable[apb.UploadRequest]
) -> list[apb.UploadResponse]:
    async def gen() -> AsyncIterator[apb.UploadRequest]:
        for r in requests:
            yield r

    return [r async for r in stub.Upload(gen())]


async def upload_blob(stub: ArtifactServiceAsyncStub, data: bytes, **start_kwargs: Any) -> str:
    digest = digest_of(data)
    responses = await run_upload(
        stub,
        [start(size_bytes=len(data), digest=digest, **start_kwargs), *chunks(data), finish()],
    )
    assert responses[-1].WhichOneof("kind") == "finished"
    return digest


async def download(
    stub: ArtifactServiceAsyncStub, **kwargs: Any
) -> tuple[apb.DownloadHeader, bytes]:
    header = None
    body = bytearray()
    async for msg in stub.Download(apb.DownloadRequest(**kwargs)):
        if msg.WhichOneof("kind") == "header":
            header = msg.header
        else:
            assert crc(msg.chunk.data) == msg.chunk.crc32c
            assert msg.chunk.offset == kwargs.get("offset", 0) + len(body)
            body += msg.chunk.data
    assert header is not None
    return header, bytes(body)


async def test_blob_round_trip_and_dedup(artifacts: ArtifactServiceAsyncStub) -> None:
    data = os.urandom(3 * CHUNK + 123)
    digest = await upload_blob(artifacts, data)
    header, body = await download(artifacts, digest=digest)
    assert body == data and header.blob.size_bytes == len(data)
    _, middle = await download(artifacts, digest=digest, offset=1000, length=CHUNK)
    assert middle == data[1000 : 1000 + CHUNK]
    # Same content again: finished at once, no bytes sent.
    responses = await run_upload(artifacts, [start(size_bytes=len(data), digest=digest)])
    assert responses[0].started.already_exists
    assert responses[-1].finished.blob.digest == digest


async def test_bad_chunks_are_rejected_with_the_committed_offset(
    artifacts: ArtifactServiceAsyncStub,
) -> None:
    data = os.urandom(2 * CHUNK)
    good = list(chunks(data))
    bad = apb.UploadRequest(
        chunk=apb.UploadChunk(offset=CHUNK, data=data[CHUNK:], crc32c=crc(b"other"))
    )
    stream: Any = artifacts.Upload()  # type: ignore[call-arg]  # write/read style
    await stream.write(start(size_bytes=len(data), digest=digest_of(data)))
    started: Any = await stream.read()
    await stream.write(good[0])
    await stream.write(bad)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        while True:
            msg = await stream.read()
            assert msg is not grpc.aio.EOF  # type: ignore[attr-defined]
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(exc.value).reason == "CHECKSUM_MISMATCH"
    assert error_info(exc.value).metadata["committed_offset"] == str(CHUNK)
    # Resume from the committed offset and finish.
    upload_id = started.started.upload_id
    responses = await run_upload(
        artifacts, [start(upload_id=upload_id), *chunks(data, offset=CHUNK), finish()]
    )
    assert responses[0].started.committed_offset == CHUNK
    assert responses[-1].finished.blob.digest == digest_of(data)


@pytest.mark.parametrize(
    ("requests_after_start", "reason"),
    [
        (
            [apb.UploadRequest(chunk=apb.UploadChunk(offset=5, data=b"x", crc32c=crc(b"x")))],
            "UNEXPECTED_OFFSET",
        ),
        ([apb.UploadRequest(chunk=apb.UploadChunk(offset=0, data=b"", crc32c=0))], "INVALID_CHUNK"),
        ([finish()], "SIZE_MISMATCH"),
        ([start(size_bytes=1)], "PROTOCOL_VIOLATION"),
    ],
)
async def test_protocol_errors(
    artifacts: ArtifactServiceAsyncStub,
    requests_after_start: list[apb.UploadRequest],
    reason: str,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await run_upload(artifacts, [start(size_bytes=10), *requests_after_start])
    assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(exc.value).reason == reason


async def test_wrong_digest_leaves_nothing_visible(artifacts: ArtifactServiceAsyncStub) -> None:
    data = os.urandom(CHUNK)
    claimed = digest_of(b"something else")
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await run_upload(
            artifacts, [start(size_bytes=len(data), digest=claimed), *chunks(data), finish()]
        )
    assert error_info(exc.value).reason == "DIGEST_MISMATCH"
    for digest in (claimed, digest_of(data)):
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await artifacts.GetBlob(apb.GetBlobRequest(digest=digest))
        assert exc.value.code() == grpc.StatusCode.NOT_FOUND


async def test_first_message_must_be_start(artifacts: ArtifactServiceAsyncStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await run_upload(artifacts, [finish()])
    assert error_info(exc.value).reason == "PROTOCOL_VIOLATION"


async def test_stream_without_finish_is_resumable(artifacts: ArtifactServiceAsyncStub) -> None:
    data = os.urandom(3 * CHUNK)
    first = await run_upload(artifacts, [start(size_bytes=len(data)), *list(chunks(data))[:2]])
    upload_id = first[0].started.upload_id
    assert first[-1].progress.committed_offset == 2 * CHUNK
    status = await artifacts.GetUpload(apb.GetUploadRequest(upload_id=upload_id))
    assert status.committed_offset == 2 * CHUNK and status.size_bytes == len(data)
    rest = await run_upload(
        artifacts,
        [start(upload_id=upload_id), *chunks(data, offset=2 * CHUNK), finish(digest_of(data))],
    )
    assert rest[-1].finished.blob.size_bytes == len(data)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await artifacts.GetUpload(apb.GetUploadRequest(upload_id=upload_id))
    assert error_info(exc.value).reason == "UPLOAD_NOT_FOUND"


async def test_manifest_makes_the_version_ready(
    artifacts: ArtifactServiceAsyncStub, registry: RegistryServiceAsyncStub
) -> None:
    await registry.CreateModel(rpc.CreateModelRequest(model_id="fraud"))
    version = await registry.CreateModelVersion(
        rpc.CreateModelVersionRequest(parent="models/fraud", model_version=pb.ModelVersion())
    )
    assert version.state == pb.ModelVersion.PENDING_UPLOAD
    weights, config = os.urandom(CHUNK + 7), b'{"layers": 3}'
    files = [
        {"path": "config.json", "size": len(config), "digest": digest_of(config)},
        {"path": "weights/model.bin", "size": len(weights), "digest": digest_of(weights)},
    ]
    manifest = json.dumps({"schemaVersion": 1, "files": files}).encode()
    # The manifest is refused while a file it lists is missing.
    await upload_blob(artifacts, config)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await upload_blob(artifacts, manifest, version=version.name, media_type=MANIFEST_TYPE)
    assert error_info(exc.value).reason == "MANIFEST_BLOB_MISSING"
    still = await registry.GetModelVersion(rpc.GetModelVersionRequest(name=version.name))
    assert still.state == pb.ModelVersion.PENDING_UPLOAD
    await upload_blob(artifacts, weights)
    await upload_blob(artifacts, manifest, version=version.name, media_type=MANIFEST_TYPE)
    ready = await registry.GetModelVersion(rpc.GetModelVersionRequest(name=version.name))
    assert ready.state == pb.ModelVersion.READY
    assert ready.artifact.digest == digest_of(manifest)
    await registry.SetAlias(
        rpc.SetAliasRequest(alias=pb.Alias(name="models/fraud/aliases/prod", version=ready.name))
    )
    header, body = await download(artifacts, alias="models/fraud/aliases/prod")
    assert body == manifest and header.version == ready.name
    assert header.media_type == MANIFEST_TYPE
    # The version's artifact is set once.
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await upload_blob(artifacts, manifest, version=version.name, media_type=MANIFEST_TYPE)
    assert error_info(exc.value).reason == "VERSION_NOT_PENDING"


async def test_bad_manifests_are_rejected(
    artifacts: ArtifactServiceAsyncStub, registry: RegistryServiceAsyncStub
) -> None:
    await registry.CreateModel(rpc.CreateModelRequest(model_id="fraud"))
    version = await registry.CreateModelVersion(
        rpc.CreateModelVersionRequest(parent="models/fraud", model_version=pb.ModelVersion())
    )
    for body in (
        b"not json",
        json.dumps(
            {"schemaVersion": 1, "files": [{"path": "../x", "size": 0, "digest": digest_of(b"")}]}
        ).encode(),
        json.dumps({"schemaVersion": 1, "files": []}).encode(),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as exc:
            await upload_blob(artifacts, body, version=version.name)
        assert error_info(exc.value).reason == "INVALID_MANIFEST"
    still = await registry.GetModelVersion(rpc.GetModelVersionRequest(name=version.name))
    assert still.state == pb.ModelVersion.PENDING_UPLOAD


async def test_download_errors(
    artifacts: ArtifactServiceAsyncStub, registry: RegistryServiceAsyncStub
) -> None:
    digest = await upload_blob(artifacts, b"hello")
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await download(artifacts, digest=digest, offset=6)
    assert exc.value.code() == grpc.StatusCode.OUT_OF_RANGE
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await download(artifacts, digest=digest_of(b"missing"))
    assert error_info(exc.value).reason == "BLOB_NOT_FOUND"
    await registry.CreateModel(rpc.CreateModelRequest(model_id="fraud"))
    pending = await registry.CreateModelVersion(
        rpc.CreateModelVersionRequest(parent="models/fraud", model_version=pb.ModelVersion())
    )
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await download(artifacts, version=pending.name)
    assert error_info(exc.value).reason == "VERSION_NOT_READY"


async def test_concurrent_uploads_of_the_same_content(
    artifacts: ArtifactServiceAsyncStub, server: Running
) -> None:
    data = os.urandom(2 * CHUNK)
    digests = await asyncio.gather(*(upload_blob(artifacts, data) for _ in range(4)))
    assert set(digests) == {digest_of(data)}
    _, body = await download(artifacts, digest=digests[0])
    assert body == data
