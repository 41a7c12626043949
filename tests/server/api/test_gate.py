"""The gate: nothing enforced with auth off, a principal and the table with auth on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from modelregistry.v1 import artifact_service_pb2 as art
from modelregistry.v1 import registry_service_pb2 as reg
from modelregistry_server.api.access import AccessControl
from modelregistry_server.api.gate import AuthMode, Gate, peek
from modelregistry_server.auth.authenticator import Authenticator
from modelregistry_server.auth.authorizer import Authorizer
from modelregistry_server.domain.errors import PermissionDenied, Unauthenticated
from modelregistry_server.domain.principals import user
from support.access_fakes import FakeLookups, FakePolicies

GET_MODEL = "/modelregistry.v1.RegistryService/GetModel"
CERT = {"x509_common_name": [b"alice"], "x509_subject": [b"CN=alice,O=ml"]}


def gate(mode: AuthMode, admins: frozenset[str] = frozenset()) -> Gate:
    access = AccessControl(Authorizer(FakePolicies(), admins), FakeLookups())
    return Gate(mode, Authenticator(None, None), access)


async def test_auth_off_records_the_caller_and_enforces_nothing() -> None:
    g = gate(AuthMode.OFF)
    request = reg.GetModelRequest(name="models/fraud")
    admitted = await g.admit(GET_MODEL, request, [], CERT, "r")
    assert admitted.caller == "CN=alice,O=ml" and admitted.principal is None
    assert (await g.admit(GET_MODEL, request, [], {}, "r")).caller == "anonymous"


async def test_auth_required_needs_a_principal_and_a_permission(
    caplog: pytest.LogCaptureFixture,
) -> None:
    g = gate(AuthMode.REQUIRED, frozenset({"user:root"}))
    request = reg.GetModelRequest(name="models/fraud")
    with pytest.raises(Unauthenticated) as missing:
        await g.admit(GET_MODEL, request, [], {}, "r1")
    assert missing.value.reason == "CREDENTIALS_MISSING"
    with pytest.raises(PermissionDenied):
        await g.admit(GET_MODEL, request, [], CERT, "r2")
    audited = [r for r in caplog.records if r.name == "modelreg.audit"]
    assert [getattr(r, "decision", "") for r in audited] == ["UNAUTHENTICATED", "DENIED"]
    assert getattr(audited[1], "principal", "") == "user:alice"
    assert getattr(audited[1], "permission", "") == "models.get"
    assert getattr(audited[1], "request_id", "") == "r2"
    root = {"x509_common_name": [b"root"]}
    admitted = await g.admit(GET_MODEL, request, [], root, "r3")
    assert admitted.principal == user("root") and admitted.caller == "user:root"


async def test_peek_keeps_the_stream_whole() -> None:
    async def stream() -> AsyncIterator[Any]:
        yield art.UploadRequest(start=art.UploadStart(size_bytes=3))
        yield art.UploadRequest(chunk=art.UploadChunk(offset=0, data=b"abc"))

    first, replay = await peek(stream())
    assert first.start.size_bytes == 3
    assert [r.WhichOneof("kind") async for r in replay] == ["start", "chunk"]

    async def empty() -> AsyncIterator[Any]:
        return
        yield

    first, replay = await peek(empty())
    assert first is None and [r async for r in replay] == []
