"""Generated requests, valid and hostile, against every RPC family of a real
server: the answer is never INTERNAL or UNKNOWN, every error carries one
catalogued reason, and a call that fails writes nothing (the event log's
head does not move)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, struct_pb2, timestamp_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from modelregistry.v1 import artifact_service_pb2 as apb
from modelregistry.v1 import (
    artifact_service_pb2_grpc,
    event_service_pb2_grpc,
    registry_service_pb2_grpc,
    rollout_service_pb2_grpc,
)
from modelregistry.v1 import event_service_pb2 as epb
from modelregistry.v1 import registry_service_pb2 as rpc
from modelregistry.v1 import resources_pb2 as pb
from modelregistry.v1 import rollout_service_pb2 as rpb
from modelregistry.v1.error_reasons import ErrorReason
from modelregistry_server.config import ServerConfig
from modelregistry_server.server import start
from support.ports import port_open
from support.postgres import PG_HOST, PG_PORT, PG_USER, fresh_database
from support.services import require

CATALOGUE = frozenset(ErrorReason)
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
EXAMPLES = settings(
    # More with MODELREG_PROPERTY_EXAMPLES=1000 (a few minutes).
    max_examples=int(os.environ.get("MODELREG_PROPERTY_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class ThreadedServer:
    """A real server on its own event loop in a thread, so that hypothesis
    (which drives plain functions) can call it through blocking stubs."""

    def __init__(self, data_dir: Path, database_url: str = "") -> None:
        self._config = ServerConfig(
            listen="127.0.0.1:0", data_dir=data_dir, database_url=database_url
        )
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.port = 0
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        running = await start(self._config)
        await asyncio.wait_for(running.ready.wait(), 30)
        self._loop, self._stop, self.port = (
            asyncio.get_running_loop(),
            asyncio.Event(),
            running.port,
        )
        self._ready.set()
        await self._stop.wait()
        await running.stop(grace=1)

    def __enter__(self) -> ThreadedServer:
        self._thread.start()
        assert self._ready.wait(60), "server did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def channel(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[grpc.Channel]:
    """One server per database for the whole module: examples share it."""
    with contextlib.ExitStack() as stack:
        database_url = ""
        if request.param == "postgresql":
            if not port_open(PG_HOST, PG_PORT):
                require(f"PostgreSQL is not reachable at {PG_HOST}:{PG_PORT}")
            server = f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}"
            database_url = stack.enter_context(fresh_database(server))
        data_dir = tmp_path_factory.mktemp("props") / "data"
        server_ = stack.enter_context(ThreadedServer(data_dir, database_url))
        ch = stack.enter_context(grpc.insecure_channel(f"127.0.0.1:{server_.port}"))
        seed(registry_service_pb2_grpc.RegistryServiceStub(ch))
        yield ch


def seed(registry: Any) -> None:
    """Something for generated names to hit: a model, versions, an alias."""
    registry.CreateModel(rpc.CreateModelRequest(model_id="m"))
    for _ in range(2):
        registry.CreateModelVersion(
            rpc.CreateModelVersionRequest(
                parent="models/m", model_version=pb.ModelVersion(source_uri="s3://b/k")
            )
        )
    registry.SetAlias(
        rpc.SetAliasRequest(
            alias=pb.Alias(name="models/m/aliases/prod", version="models/m/versions/1")
        )
    )


def head(channel: grpc.Channel) -> int:
    events = event_service_pb2_grpc.EventServiceStub(channel)
    return int(events.ListEvents(epb.ListEventsRequest(page_size=1)).revision)


def check(channel: grpc.Channel, call: Callable[[], Any]) -> None:
    """The three properties, for one call."""
    before = head(channel)
    try:
        call()
    except grpc.RpcError as err:
        assert isinstance(err, grpc.Call)
        code = err.code()
        assert code not in NEVER, err.details()
        raw = dict(err.trailing_metadata() or ()).get("grpc-status-details-bin")
        if code in (grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED):
            return
        assert isinstance(raw, bytes), f"{code} without google.rpc.Status"
        status = status_pb2.Status.FromString(raw)
        assert len(status.details) == 1
        info = error_details_pb2.ErrorInfo()
        status.details[0].Unpack(info)
        assert info.reason in CATALOGUE, info.reason
        assert head(channel) == before, f"{info.reason}: a failed call wrote events"


# -- strategies -----------------------------------------------------------------

HOSTILE = st.sampled_from(
    ["", "\x00", "\u202e", "a" * 70, "m", "prod", "../x", "*", "models/m", " ", "ü" * 300]
)
TEXT = st.one_of(HOSTILE, st.text(max_size=80))
NAMES = st.one_of(
    st.sampled_from(
        [
            "models/m",
            "models/m/versions/1",
            "models/m/versions/2",
            "models/m/versions/99",
            "models/m/aliases/prod",
            "models/m/aliases/new",
            "models/other",
            "models/M",
            "models/m/versions/0",
            "models/m/versions/-1",
            "models/m/versions/99999999999999999999",
        ]
    ),
    TEXT,
)
INT64 = st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-3, 3))
INT32 = st.one_of(st.integers(-(2**31), 2**31 - 1), st.integers(-3, 1001))
JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.floats(), st.integers(-(2**53), 2**53), TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=12,
)
LABELS = st.dictionaries(TEXT, TEXT, max_size=4)
ETAGS = st.one_of(st.just(""), TEXT, st.sampled_from(['W/"1"', "1", "v1"]))
MASKS = st.lists(
    st.one_of(st.sampled_from(["*", "description", "labels", "metadata", "state"]), TEXT),
    max_size=4,
)


def _timestamps() -> st.SearchStrategy[timestamp_pb2.Timestamp]:
    return st.builds(timestamp_pb2.Timestamp, seconds=INT64, nanos=INT32)


@st.composite
def metadata(draw: st.DrawFn) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    value = draw(st.dictionaries(TEXT, JSON, max_size=4))
    with contextlib.suppress(ValueError, TypeError):
        out.update(value)
    return out


def _model() -> st.SearchStrategy[pb.Model]:
    return st.builds(
        pb.Model,
        name=NAMES,
        display_name=TEXT,
        description=TEXT,
        labels=LABELS,
        etag=ETAGS,
        protected_aliases=st.lists(TEXT, max_size=5),
    )


def _version() -> st.SearchStrategy[pb.ModelVersion]:
    return st.builds(
        pb.ModelVersion,
        name=NAMES,
        source_uri=st.one_of(TEXT, st.sampled_from(["s3://b/k", "file:///x", "javascript:x"])),
        description=TEXT,
        labels=LABELS,
        metadata=metadata(),
        etag=ETAGS,
        state=st.integers(0, 5),
    )


REGISTRY_CALLS = st.one_of(
    st.builds(
        lambda r: ("CreateModel", r),
        st.builds(rpc.CreateModelRequest, model_id=TEXT, model=_model()),
    ),
    st.builds(lambda r: ("GetModel", r), st.builds(rpc.GetModelRequest, name=NAMES)),
    st.builds(
        lambda r: ("ListModels", r),
        st.builds(rpc.ListModelsRequest, page_size=INT32, page_token=TEXT, filter=TEXT),
    ),
    st.builds(
        lambda r: ("UpdateModel", r),
        st.builds(
            rpc.UpdateModelRequest,
            model=_model(),
            update_mask=st.builds(field_mask_pb2.FieldMask, paths=MASKS),
        ),
    ),
    st.builds(
        lambda r: ("DeleteModel", r),
        st.builds(rpc.DeleteModelRequest, name=NAMES, etag=ETAGS, force=st.just(False)),
    ),
    st.builds(
        lambda r: ("CreateModelVersion", r),
        st.builds(rpc.CreateModelVersionRequest, parent=NAMES, model_version=_version()),
    ),
    st.builds(
        lambda r: ("UpdateModelVersion", r),
        st.builds(
            rpc.UpdateModelVersionRequest,
            model_version=_version(),
            update_mask=st.builds(field_mask_pb2.FieldMask, paths=MASKS),
        ),
    ),
    st.builds(
        lambda r: ("ListModelVersions", r),
        st.builds(
            rpc.ListModelVersionsRequest,
            parent=NAMES,
            page_size=INT32,
            page_token=TEXT,
            filter=TEXT,
        ),
    ),
    st.builds(
        lambda r: ("SetAlias", r),
        st.builds(
            rpc.SetAliasRequest, alias=st.builds(pb.Alias, name=NAMES, version=NAMES), etag=ETAGS
        ),
    ),
    st.builds(
        lambda r: ("ResolveAlias", r),
        st.builds(rpc.ResolveAliasRequest, name=NAMES, read_time=_timestamps()),
    ),
    st.builds(
        lambda r: ("BatchSetAliases", r),
        st.builds(
            rpc.BatchSetAliasesRequest,
            parent=NAMES,
            requests=st.lists(
                st.builds(
                    rpc.SetAliasRequest, alias=st.builds(pb.Alias, name=NAMES, version=NAMES)
                ),
                max_size=3,
            ),
        ),
    ),
    st.builds(
        lambda r: ("ApproveModelVersion", r),
        st.builds(rpc.ApproveModelVersionRequest, name=NAMES, comment=TEXT, etag=ETAGS),
    ),
    st.builds(
        lambda r: ("DeleteAlias", r), st.builds(rpc.DeleteAliasRequest, name=NAMES, etag=ETAGS)
    ),
)


@EXAMPLES
@given(REGISTRY_CALLS)
def test_registry_service(channel: grpc.Channel, call: tuple[str, Message]) -> None:
    method, request = call
    stub = registry_service_pb2_grpc.RegistryServiceStub(channel)
    check(channel, lambda: getattr(stub, method)(request, timeout=10))


@EXAMPLES
@given(
    st.builds(
        epb.ListEventsRequest,
        filter=st.builds(
            epb.EventFilter, model=NAMES, resource=NAMES, types=st.lists(TEXT, max_size=3)
        ),
        start_revision=INT64,
        start_time=_timestamps(),
        end_time=_timestamps(),
        page_size=INT32,
        page_token=TEXT,
    ),
    st.builds(
        epb.WatchRequest,
        filter=st.builds(
            epb.EventFilter, model=NAMES, resource=NAMES, types=st.lists(TEXT, max_size=3)
        ),
        start_revision=INT64,
    ),
)
def test_event_service(
    channel: grpc.Channel, listing: epb.ListEventsRequest, watch: epb.WatchRequest
) -> None:
    stub = event_service_pb2_grpc.EventServiceStub(channel)
    check(channel, lambda: stub.ListEvents(listing, timeout=10))

    def first_message() -> None:
        call: Any = stub.Watch(watch, timeout=10)
        try:
            next(call)
        finally:
            call.cancel()

    check(channel, first_message)


@EXAMPLES
@given(
    st.one_of(
        st.builds(
            lambda r: ("StartRollout", r),
            st.builds(
                rpb.StartRolloutRequest,
                alias=NAMES,
                candidate_version=NAMES,
                steps=st.lists(st.integers(-5, 200), max_size=6),
                alias_etag=ETAGS,
            ),
        ),
        st.builds(
            lambda r: ("ListRollouts", r),
            st.builds(rpb.ListRolloutsRequest, parent=NAMES, page_size=INT32, page_token=TEXT),
        ),
        st.builds(
            lambda r: ("AdvanceRollout", r),
            st.builds(rpb.AdvanceRolloutRequest, name=NAMES, etag=ETAGS),
        ),
    )
)
def test_rollout_service(channel: grpc.Channel, call: tuple[str, Message]) -> None:
    method, request = call
    stub = rollout_service_pb2_grpc.RolloutServiceStub(channel)
    check(channel, lambda: getattr(stub, method)(request, timeout=10))


@EXAMPLES
@given(
    st.builds(
        apb.DownloadRequest,
        digest=st.one_of(TEXT, st.just("sha256:" + "0" * 64)),
        offset=INT64,
        length=INT64,
        chunk_bytes=INT32,
    ),
    st.lists(
        st.one_of(
            st.builds(
                lambda s: apb.UploadRequest(start=s),
                st.builds(
                    apb.UploadStart,
                    upload_id=TEXT,
                    size_bytes=INT64,
                    digest=TEXT,
                    version=NAMES,
                    media_type=TEXT,
                ),
            ),
            st.builds(
                lambda c: apb.UploadRequest(chunk=c),
                st.builds(
                    apb.UploadChunk,
                    offset=INT64,
                    data=st.binary(max_size=64),
                    crc32c=st.integers(0, 2**32 - 1),
                ),
            ),
            st.builds(
                lambda f: apb.UploadRequest(finish=f), st.builds(apb.UploadFinish, digest=TEXT)
            ),
        ),
        max_size=4,
    ),
    st.builds(apb.GetUploadRequest, upload_id=TEXT),
)
def test_artifact_service(
    channel: grpc.Channel,
    download: apb.DownloadRequest,
    upload: list[apb.UploadRequest],
    get_upload: apb.GetUploadRequest,
) -> None:
    stub = artifact_service_pb2_grpc.ArtifactServiceStub(channel)
    check(channel, lambda: list(stub.Download(download, timeout=10)))
    check(channel, lambda: list(stub.Upload(iter(upload), timeout=10)))
    check(channel, lambda: stub.GetUpload(get_upload, timeout=10))
    check(
        channel,
        lambda: stub.CancelUpload(
            apb.CancelUploadRequest(upload_id=get_upload.upload_id), timeout=10
        ),
    )
