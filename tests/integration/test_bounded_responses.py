"""The largest legal resources can always be read back: every list at its
largest page size, every stream, the hash-chain check. No stored event is
larger than MAX_EVENT_BYTES and no response passes the message limit."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import grpc
from google.protobuf import field_mask_pb2, struct_pb2
from modelregistry import RegistryClient
from modelregistry.event_chain import verify_events
from modelregistry.v1 import event_service_pb2 as epb
from modelregistry.v1 import event_service_pb2_grpc
from modelregistry.v1 import registry_service_pb2 as rpc
from modelregistry.v1 import resources_pb2 as pb
from modelregistry_server.api.paging import MAX_PAGE_BYTES
from modelregistry_server.config import MAX_MESSAGE_BYTES
from modelregistry_server.domain import validation
from modelregistry_server.domain.events import MAX_EVENT_BYTES
from modelregistry_server.server import Running

if TYPE_CHECKING:
    from modelregistry.v1.registry_service_pb2_grpc import RegistryServiceAsyncStub as Stub

VERSIONS = 12
UPDATES = 2
# Characters JSON escaping doubles, and ones UTF-8 spends four bytes on.
ESCAPED = '"'
WIDE = "\U0001d538"


def _labels() -> dict[str, str]:
    return {f"k{i:02d}" + "k" * 60: "v" * 63 for i in range(validation.MAX_LABELS)}


def _largest_model() -> pb.Model:
    return pb.Model(
        display_name=WIDE * validation.MAX_DISPLAY_NAME,
        description=ESCAPED * validation.MAX_DESCRIPTION_BYTES,
        labels=_labels(),
        protected_aliases=[f"a{i:02d}" + "a" * 60 for i in range(validation.MAX_PROTECTED_ALIASES)],
    )


def _largest_metadata(tag: int) -> struct_pb2.Struct:
    """64 KiB of JSON that costs far more as protobuf: many tiny numbers."""
    metadata = struct_pb2.Struct()
    metadata.update({"run": tag, "values": [0] * (validation.MAX_METADATA_BYTES // 4 - 32)})
    return metadata


def _largest_version(tag: int) -> pb.ModelVersion:
    uri = "s3://bucket/"
    return pb.ModelVersion(
        source_uri=uri + "x" * (validation.MAX_SOURCE_URI - len(uri)),
        description=ESCAPED * validation.MAX_DESCRIPTION_BYTES,
        labels=_labels(),
        metadata=_largest_metadata(tag),
    )


async def _write_largest(registry: Stub, model_id: str) -> None:
    model = await registry.CreateModel(
        rpc.CreateModelRequest(model_id=model_id, model=_largest_model())
    )
    for i in range(VERSIONS):
        version = await registry.CreateModelVersion(
            rpc.CreateModelVersionRequest(parent=model.name, model_version=_largest_version(i))
        )
        version = await registry.ApproveModelVersion(
            rpc.ApproveModelVersionRequest(name=version.name, comment=WIDE * validation.MAX_COMMENT)
        )
        for j in range(UPDATES):
            version.metadata.CopyFrom(_largest_metadata(1000 * i + j))
            version = await registry.UpdateModelVersion(
                rpc.UpdateModelVersionRequest(
                    model_version=version,
                    update_mask=field_mask_pb2.FieldMask(paths=["metadata"]),
                )
            )
    model = await registry.GetModel(rpc.GetModelRequest(name=model.name))
    model.description = ESCAPED * (validation.MAX_DESCRIPTION_BYTES - 1)
    await registry.UpdateModel(
        rpc.UpdateModelRequest(model=model, update_mask=field_mask_pb2.FieldMask(paths=["*"]))
    )


async def test_largest_resources_read_back_through_every_list_and_stream(
    server: Running, registry: Stub, channel: grpc.aio.Channel
) -> None:
    for model_id in ("big-a", "big-b"):
        await _write_largest(registry, model_id)
    events_stub = event_service_pb2_grpc.EventServiceStub(channel)

    models = await registry.ListModels(rpc.ListModelsRequest(page_size=1000))
    assert {m.name for m in models.models} == {"models/big-a", "models/big-b"}

    for model_id in ("big-a", "big-b"):
        seen: list[pb.ModelVersion] = []
        token = ""
        while True:
            page = await registry.ListModelVersions(
                rpc.ListModelVersionsRequest(
                    parent=f"models/{model_id}", page_size=1000, page_token=token
                )
            )
            assert page.ByteSize() <= MAX_PAGE_BYTES + 1024
            seen.extend(page.model_versions)
            token = page.next_page_token
            if not token:
                break
        assert [v.version for v in seen] == list(range(VERSIONS, 0, -1))

    for page_size in (1, 1000):
        listed: list[pb.Event] = []
        token = ""
        while True:
            events_page = await events_stub.ListEvents(
                epb.ListEventsRequest(page_size=page_size, page_token=token)
            )
            assert events_page.ByteSize() <= MAX_PAGE_BYTES + 1024
            listed.extend(events_page.events)
            token = events_page.next_page_token
            if not token:
                break
        assert [e.revision for e in listed] == list(range(1, events_page.revision + 1))
    head = events_page.revision
    assert max(e.ByteSize() for e in listed) <= MAX_EVENT_BYTES
    # Together the events are well over one message: they did need paging.
    assert sum(e.ByteSize() for e in listed) > MAX_MESSAGE_BYTES

    watched: list[pb.Event] = []
    call = events_stub.Watch(epb.WatchRequest(start_revision=1))
    async with asyncio.timeout(60):
        async for message in call:
            assert message.ByteSize() <= MAX_PAGE_BYTES + 1024
            watched.extend(message.events)
            if watched:
                assert message.revision >= watched[-1].revision
            if message.revision >= head:
                break
    call.cancel()
    assert [e.revision for e in watched] == list(range(1, head + 1))

    async with RegistryClient(f"127.0.0.1:{server.port}") as client:
        report = await verify_events(client.list_events(page_size=1000))
    assert report.checked == head and not report.broken_at
