"""Hostile input: every malformed request is INVALID_ARGUMENT with a reason,
never INTERNAL or UNKNOWN, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import math
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, struct_pb2, timestamp_pb2
from integration.test_artifacts_api import MANIFEST_TYPE, chunks, digest_of, finish, start
from integration.test_registry_api import make_model, make_ready_version
from modelregistry.v1 import artifact_service_pb2 as apb
from modelregistry.v1 import artifact_service_pb2_grpc, event_service_pb2_grpc
from modelregistry.v1 import event_service_pb2 as epb
from modelregistry.v1 import registry_service_pb2 as rpc
from modelregistry.v1 import resources_pb2 as pb
from support.grpc_errors import error_info as info
from support.grpc_errors import expect_error

if TYPE_CHECKING:
    from modelregistry.v1.artifact_service_pb2_grpc import ArtifactServiceAsyncStub
    from modelregistry.v1.event_service_pb2_grpc import EventServiceAsyncStub
    from modelregistry.v1.registry_service_pb2_grpc import RegistryServiceAsyncStub as Stub

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def artifacts(channel: grpc.aio.Channel) -> ArtifactServiceAsyncStub:
    return artifact_service_pb2_grpc.ArtifactServiceStub(channel)


@pytest.fixture
def events(channel: grpc.aio.Channel) -> EventServiceAsyncStub:
    return event_service_pb2_grpc.EventServiceStub(channel)


def _version_with(metadata: struct_pb2.Struct) -> rpc.CreateModelVersionRequest:
    return rpc.CreateModelVersionRequest(
        parent="models/fraud", model_version=pb.ModelVersion(metadata=metadata)
    )


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
async def test_metadata_with_nan_or_infinity_is_invalid(registry: Stub, value: float) -> None:
    await make_model(registry)
    metadata = struct_pb2.Struct()
    metadata.update({"metrics": {"auc": value}})
    await expect_error(
        registry.CreateModelVersion(_version_with(metadata)), INVALID, "INVALID_FIELD"
    )


@pytest.mark.parametrize("where", ["key", "value"])
async def test_metadata_with_nul_is_invalid(registry: Stub, where: str) -> None:
    await make_model(registry)
    metadata = struct_pb2.Struct()
    metadata.update({"a\x00b": 1} if where == "key" else {"note": "a\x00b"})
    await expect_error(
        registry.CreateModelVersion(_version_with(metadata)), INVALID, "INVALID_FIELD"
    )


async def test_deeply_nested_metadata_is_invalid(registry: Stub) -> None:
    await make_model(registry)
    value: Any = 1
    for _ in range(20):  # deep, yet within protobuf's own recursion limit
        value = {"a": value}
    metadata = struct_pb2.Struct()
    metadata.update({"deep": value})
    await expect_error(
        registry.CreateModelVersion(_version_with(metadata)), INVALID, "INVALID_FIELD"
    )


async def test_nul_in_a_label_filter_is_invalid(registry: Stub) -> None:
    await make_model(registry)
    await expect_error(
        registry.ListModels(rpc.ListModelsRequest(filter='labels.team = "a\x00b"')),
        INVALID,
        "INVALID_FILTER",
    )


@pytest.mark.parametrize(
    ("seconds", "nanos"), [(2**62, 0), (-(2**62), 0), (0, -1), (0, 1_000_000_000)]
)
async def test_out_of_range_read_time_is_invalid(registry: Stub, seconds: int, nanos: int) -> None:
    await make_model(registry)
    await make_ready_version(registry)
    read_time = timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)
    await expect_error(
        registry.ResolveAlias(
            rpc.ResolveAliasRequest(name="models/fraud/aliases/production", read_time=read_time)
        ),
        INVALID,
        "INVALID_FIELD",
    )


@pytest.mark.parametrize("field", ["start_time", "end_time"])
async def test_out_of_range_event_times_are_invalid(
    registry: Stub, events: EventServiceAsyncStub, field: str
) -> None:
    await make_model(registry)
    request = epb.ListEventsRequest()
    getattr(request, field).CopyFrom(timestamp_pb2.Timestamp(seconds=2**62))
    await expect_error(events.ListEvents(request), INVALID, "INVALID_FIELD")


async def test_too_many_protected_aliases_are_invalid(registry: Stub) -> None:
    model = await make_model(registry)
    model.protected_aliases.extend(f"a{i}" for i in range(1000))
    await expect_error(
        registry.UpdateModel(
            rpc.UpdateModelRequest(
                model=model, update_mask=field_mask_pb2.FieldMask(paths=["protected_aliases"])
            )
        ),
        INVALID,
        "INVALID_FIELD",
    )


async def test_a_long_update_mask_path_is_not_echoed_in_full(registry: Stub) -> None:
    model = await make_model(registry)
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await registry.UpdateModel(
            rpc.UpdateModelRequest(
                model=model, update_mask=field_mask_pb2.FieldMask(paths=["x" * 10_000] * 50)
            )
        )
    assert exc.value.code() == INVALID
    assert len(exc.value.details() or "") < 1024
    trailers: Any = exc.value.trailing_metadata() or ()
    assert sum(len(value) for _, value in trailers) < 4096


@pytest.mark.parametrize("text", ["evil\u202egnp.exe", "a\u2066b", "\u200fx"])
async def test_bidi_controls_in_display_text_are_invalid(registry: Stub, text: str) -> None:
    await expect_error(
        registry.CreateModel(
            rpc.CreateModelRequest(model_id="m", model=pb.Model(display_name=text))
        ),
        INVALID,
        "INVALID_FIELD",
    )
    await expect_error(
        registry.CreateModel(
            rpc.CreateModelRequest(model_id="m", model=pb.Model(description=text))
        ),
        INVALID,
        "INVALID_FIELD",
    )


@pytest.mark.parametrize(
    "uri", ["javascript:alert(1)", "file:///etc/passwd", "data:text/html,x", "s3:/no-host"]
)
async def test_source_uri_outside_the_scheme_list_is_invalid(registry: Stub, uri: str) -> None:
    await make_model(registry)
    await expect_error(
        registry.CreateModelVersion(
            rpc.CreateModelVersionRequest(
                parent="models/fraud", model_version=pb.ModelVersion(source_uri=uri)
            )
        ),
        INVALID,
        "INVALID_FIELD",
    )


@pytest.mark.parametrize(
    "uri", ["s3://bucket/run/model", "gs://b/x", "https://hub.example/m", "hf://org/model"]
)
async def test_source_uri_on_the_scheme_list_is_accepted(registry: Stub, uri: str) -> None:
    await make_model(registry)
    created = await registry.CreateModelVersion(
        rpc.CreateModelVersionRequest(
            parent="models/fraud", model_version=pb.ModelVersion(source_uri=uri)
        )
    )
    assert created.source_uri == uri


def _manifest_text(files: str) -> bytes:
    return ('{"schemaVersion":1,"files":' + files + "}").encode()


@pytest.mark.parametrize(
    "body",
    [
        _manifest_text(
            '[{"path":"a","size":' + "9" * 5000 + ',"digest":"sha256:' + "0" * 64 + '"}]'
        ),
        _manifest_text("[" * 100_000 + "]" * 100_000),
        _manifest_text(
            '[{"path":"a","size":' + str(2**70) + ',"digest":"sha256:' + "0" * 64 + '"}]'
        ),
    ],
    ids=["5000-digit size", "100k nested brackets", "size past 2^63"],
)
async def test_hostile_manifests_are_invalid_and_leave_no_upload(
    registry: Stub, artifacts: ArtifactServiceAsyncStub, body: bytes
) -> None:
    await make_model(registry)
    version = await registry.CreateModelVersion(
        rpc.CreateModelVersionRequest(parent="models/fraud", model_version=pb.ModelVersion())
    )
    requests = [
        start(
            size_bytes=len(body),
            digest=digest_of(body),
            version=version.name,
            media_type=MANIFEST_TYPE,
        ),
        *chunks(body),
        finish(),
    ]
    call = artifacts.Upload(iter(requests))
    started = await call.read()
    assert isinstance(started, apb.UploadResponse) and started.HasField("started")
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        while await call.read() is not grpc.aio.EOF:  # type: ignore[attr-defined]
            pass
    assert exc.value.code() == INVALID, exc.value.details()
    assert info(exc.value).reason == "INVALID_MANIFEST"
    # The upload is gone, not half there: GetUpload agrees with a resume.
    upload_id = started.started.upload_id
    await expect_error(
        artifacts.GetUpload(apb.GetUploadRequest(upload_id=upload_id)),
        grpc.StatusCode.NOT_FOUND,
        "UPLOAD_NOT_FOUND",
    )


def _deep_struct(depth: int) -> bytes:
    """A CreateModelVersionRequest whose metadata nests `depth` Structs deep:
    valid wire format, past protobuf's recursion limit (built by hand, as
    the library refuses to build it)."""

    def field(tag: int, body: bytes) -> bytes:
        return bytes([tag]) + _varint(len(body)) + body

    value = b"\x11" + b"\x00" * 8  # Value.number_value = 0
    for _ in range(depth):
        struct = field(0x0A, field(0x0A, b"a") + field(0x12, value))  # {"a": value}
        value = field(0x2A, struct)  # Value.struct_value
    metadata = field(0x0A, field(0x0A, b"a") + field(0x12, value))
    version = field(0x42, metadata)  # ModelVersion.metadata = 8
    return field(0x0A, b"models/fraud") + field(0x12, version)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("/modelregistry.v1.RegistryService/GetModel", b"\xff\xff\xff\xff"),
        ("/modelregistry.v1.RegistryService/GetModel", b"\x0a\x02\xff\xfe"),  # bad UTF-8
        ("/modelregistry.v1.RegistryService/CreateModelVersion", _deep_struct(200)),
    ],
    ids=["garbage", "invalid utf-8", "200-deep struct"],
)
async def test_malformed_protobuf_is_invalid_argument_without_a_traceback(
    channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture, method: str, body: bytes
) -> None:
    call = channel.unary_unary(method, None, None)(body)
    await expect_error(call, INVALID, "INVALID_REQUEST")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_malformed_message_in_a_request_stream_is_invalid_argument(
    channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    upload = channel.stream_stream("/modelregistry.v1.ArtifactService/Upload", None, None)
    call = upload(iter([b"\x0a\x03\xff\xff\xff"]))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        async for _ in call:
            pass
    assert exc.value.code() == INVALID
    assert info(exc.value).reason == "INVALID_REQUEST"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_watch_from_a_future_revision_is_out_of_range_with_the_head(
    registry: Stub, events: EventServiceAsyncStub
) -> None:
    await make_model(registry)  # revision 1
    call = events.Watch(epb.WatchRequest(start_revision=1000))
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        async with asyncio.timeout(10):
            async for _ in call:
                pass
    assert exc.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert info(exc.value).reason == "REVISION_IN_FUTURE"
    assert info(exc.value).metadata["head_revision"] == "1"
    # The next revision is not the future: it waits for it.
    call = events.Watch(epb.WatchRequest(start_revision=2))
    await make_ready_version(registry)
    async with asyncio.timeout(10):
        first = await call.read()
    assert isinstance(first, epb.WatchResponse) and first.events[0].revision == 2
    call.cancel()
