"""Authentication through a real server: bad credentials are never accepted
and never an INTERNAL error, denials are audited, service-account tokens
work and stop working on every replica once revoked, and the holes the
registry had without authentication are closed."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from modelregistry.client import RegistryClient
from modelregistry.errors import RegistryError
from modelregistry.v1 import registry_service_pb2 as rpc
from modelregistry.v1 import registry_service_pb2_grpc
from modelregistry.v1 import resources_pb2 as pb
from modelregistry_server.config import ServerConfig
from modelregistry_server.server import Running
from support.grpc_errors import error_info
from support.in_process import serving
from support.jwt_issuer import Issuer
from support.pki import issue, make_ca

ROOT = "user:root"


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture
async def server(sqlite_url: str, tmp_path: Path, issuer: Issuer) -> AsyncIterator[Running]:
    async with serving(issuer.server_config(sqlite_url, tmp_path, ROOT)) as running:
        yield running


def client(running: Running, token: str | None) -> RegistryClient:
    return RegistryClient(f"127.0.0.1:{running.port}", token=token, timeout=10)


async def get_model(running: Running, metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        stub = registry_service_pb2_grpc.RegistryServiceStub(channel)
        try:
            await stub.GetModel(rpc.GetModelRequest(name="models/fraud"), metadata=metadata)
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.UNAUTHENTICATED:
                assert error_info(err).reason.startswith("CREDENTIALS_")
            return err.code()
    return grpc.StatusCode.OK


async def test_bad_credentials_are_never_accepted(server: Running, issuer: Issuer) -> None:
    async with client(server, issuer.token("root")) as root:
        await root.create_model("fraud")
    assert await get_model(server, (("authorization", f"Bearer {issuer.token('root')}"),)) == (
        grpc.StatusCode.OK
    )
    for case, token in issuer.bad_tokens("root").items():
        code = await get_model(server, (("authorization", f"Bearer {token}"),))
        assert code == grpc.StatusCode.UNAUTHENTICATED, case
    headers = ["Basic cm9vdDpyb290", "Bearer", "Bearer a b", "bearer", "x" * 30_000]
    for header in headers:
        code = await get_model(server, (("authorization", header),))
        assert code == grpc.StatusCode.UNAUTHENTICATED, header[:20]
    assert await get_model(server, ()) == grpc.StatusCode.UNAUTHENTICATED
    # Past what the transport takes at all: refused, still not INTERNAL.
    code = await get_model(server, (("authorization", "Bearer " + "y" * 200_000),))
    assert code not in (grpc.StatusCode.OK, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)


async def test_the_anonymous_chain_is_closed(server: Running) -> None:
    """Create, version, approve, promote, force-delete: all refused anonymously."""
    async with client(server, None) as anonymous:
        with pytest.raises(RegistryError) as exc:
            await anonymous.create_model("fraud")
    assert exc.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert exc.value.reason == "CREDENTIALS_MISSING"


async def test_denials_are_audited_and_explained(
    server: Running, issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="modelreg.audit")
    async with client(server, issuer.token("root")) as root:
        await root.create_model("fraud")
    async with client(server, issuer.token("mallory")) as mallory:
        with pytest.raises(RegistryError) as exc:
            await mallory.delete_model("models/fraud", force=True, request_id="req-42")
        with pytest.raises(RegistryError) as missing:
            await mallory.delete_model("models/ghost", force=True)
    err = exc.value
    assert err.code == grpc.StatusCode.PERMISSION_DENIED
    assert err.reason == "IAM_PERMISSION_DENIED"
    assert err.metadata["permission"] == "models.delete"
    assert err.metadata["resource"] == "models/fraud"
    assert err.metadata["principal"] == "user:mallory"
    assert "roles/owner" in err.message
    # The same answer for a model that does not exist (AIP-211).
    assert missing.value.code == grpc.StatusCode.PERMISSION_DENIED
    audited = [r for r in caplog.records if r.name == "modelreg.audit"]
    entry = next(r for r in audited if getattr(r, "request_id", "") == "req-42")
    assert getattr(entry, "principal", "") == "user:mallory"
    assert getattr(entry, "method", "").endswith("RegistryService/DeleteModel")
    assert getattr(entry, "permission", "") == "models.delete"
    assert getattr(entry, "resource", "") == "models/fraud"


async def test_grants_take_effect_at_once(server: Running, issuer: Issuer) -> None:
    async with (
        client(server, issuer.token("root")) as root,
        client(server, issuer.token("alice")) as alice,
    ):
        await root.create_model("fraud")
        with pytest.raises(RegistryError):
            await alice.get_model("models/fraud")
        await root.grant("models/fraud", "roles/viewer", "user:alice")
        assert (await alice.get_model("models/fraud")).name == "models/fraud"
        tested = await alice.test_iam_permissions("models/fraud", ["models.get", "models.delete"])
        assert list(tested.permissions) == ["models.get"]
        assert tested.checks[0].role == "roles/viewer" and tested.checks[0].bound_on == (
            "models/fraud"
        )
        assert "roles/owner" in tested.checks[1].explanation
        await root.revoke_role("models/fraud", "roles/viewer", "user:alice")
        with pytest.raises(RegistryError):
            await alice.get_model("models/fraud")


async def test_owners_and_reviewers_under_mutual_tls(sqlite_url: str, tmp_path: Path) -> None:
    """With client certificates: alice (publisher and approver) cannot
    approve her own version when the model asks for separation of duties;
    bob cannot force-delete a model he holds no role on."""
    ca, ca_cert, ca_key = make_ca("gate-ca")
    server = issue(ca_cert, ca_key, "localhost", server=True)
    (tmp_path / "ca.pem").write_bytes(ca.cert)
    config = ServerConfig(
        listen="127.0.0.1:0",
        data_dir=tmp_path / "data",
        database_url=sqlite_url,
        auth="required",
        bootstrap_admins=(ROOT,),
        tls_cert=server.write(tmp_path / "server.pem"),
        tls_key=tmp_path / "server.key",
        tls_client_ca=tmp_path / "ca.pem",
    )

    def as_(cn: str, address: str) -> RegistryClient:
        cert = issue(ca_cert, ca_key, cn, server=False)
        return RegistryClient(address, root_ca=ca.cert, client_cert=cert.cert, client_key=cert.key)

    async with serving(config) as running:
        address = f"localhost:{running.port}"
        async with as_("root", address) as root:
            await root.create_model("fraud", separation_of_duties=True)
            for role in ("roles/publisher", "roles/approver"):
                await root.grant("models/fraud", role, "user:alice")
            await root.grant("models/fraud", "roles/approver", "user:carol")
        async with as_("alice", address) as alice:
            version = await alice.create_model_version("models/fraud", source_uri="s3://b/m")
            assert version.creator == "user:alice"
            with pytest.raises(RegistryError) as own:
                await alice.approve_model_version(version.name)
        assert own.value.reason == "SEPARATION_OF_DUTIES"
        async with as_("carol", address) as carol:
            approved = await carol.approve_model_version(version.name)
        assert approved.approval.actor == "user:carol"
        async with as_("bob", address) as bob:
            with pytest.raises(RegistryError) as denied:
                await bob.delete_model("models/fraud", force=True)
        assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED


async def test_service_account_tokens_and_revocation_across_replicas(
    pg_url: str, tmp_path: Path, issuer: Issuer
) -> None:
    """A token issued through one replica works on another and stops
    working there within seconds of its revocation through the first."""
    config_a = issuer.server_config(pg_url, tmp_path / "a", ROOT)
    config_b = issuer.server_config(pg_url, tmp_path / "b", ROOT)
    async with serving(config_a) as a, serving(config_b) as b:
        async with client(a, issuer.token("root")) as root:
            await root.create_model("fraud")
            await root.grant("models/fraud", "roles/viewer", "serviceAccount:ci")
            created = await root.create_service_account_token("ci", description="tests")
            assert created.secret.startswith(f"mrsa_{created.token.token_id}_")
            listed = [t async for t in root.list_service_account_tokens("ci")]
            assert [t.name for t in listed] == [created.token.name]
            assert created.secret not in str(listed)
        async with client(b, created.secret) as ci:
            assert (await ci.get_model("models/fraud")).name == "models/fraud"
            async with client(a, issuer.token("root")) as root:
                await root.revoke_service_account_token(created.token.name)
            deadline = time.monotonic() + 10
            while True:
                try:
                    await ci.get_model("models/fraud")
                except RegistryError as err:
                    assert err.code == grpc.StatusCode.UNAUTHENTICATED
                    assert err.reason == "CREDENTIALS_REVOKED"
                    break
                assert time.monotonic() < deadline, "the revoked token still works"
                await asyncio.sleep(0.1)


async def test_lists_and_watches_show_only_what_the_caller_may_see(
    server: Running, issuer: Issuer
) -> None:
    async with client(server, issuer.token("root")) as root:
        for name in ("fraud", "churn"):
            await root.create_model(name)
        await root.grant("models/fraud", "roles/viewer", "user:alice")
    async with client(server, issuer.token("alice")) as alice:
        assert [m.name async for m in alice.list_models()] == ["models/fraud"]
        page = await alice.list_events_page()
        assert {e.model for e in page.events} == {"models/fraud"}
        seen: list[pb.Event] = []

        async def watch() -> None:
            async for event in alice.watch(start_revision=1):
                seen.append(event)
                if event.type == "MODEL_UPDATED":
                    return

        watching = asyncio.create_task(watch())
        async with client(server, issuer.token("root")) as root:
            await root.create_model_version("models/churn", source_uri="s3://b/m")
            await root.update_model(pb.Model(name="models/fraud", description="x"), ["description"])
        await asyncio.wait_for(watching, 10)
    assert {e.model for e in seen} == {"models/fraud"}
