"""Every RPC x every role, through a real server, on SQLite and PostgreSQL,
with real JWTs (signed by keys made here) and with client certificates.

Each case says what it needs (a permission on a resource); whether a
principal may make the call is then read off the role table alone, and the
server must agree: PERMISSION_DENIED exactly when the table says no, never
UNAUTHENTICATED or INTERNAL. Destructive calls carry a stale etag, so an
allowed one fails later (ABORTED) and the world stays as built.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from modelregistry.client import RegistryClient
from modelregistry.v1 import access_service_pb2 as acc
from modelregistry.v1 import artifact_service_pb2 as art
from modelregistry.v1 import edge_service_pb2 as edge
from modelregistry.v1 import event_service_pb2 as ev
from modelregistry.v1 import registry_service_pb2 as reg
from modelregistry.v1 import resources_pb2 as pb
from modelregistry.v1 import rollout_service_pb2 as ro
from modelregistry.v1 import signature_service_pb2 as sig
from modelregistry.v1.artifact_service_pb2_grpc import ArtifactServiceStub as artifact_stub
from modelregistry_server.api.access_rules import RULES
from modelregistry_server.config import ServerConfig
from modelregistry_server.domain.permissions import PERMISSIONS, ROLES, Permission, Role
from modelregistry_server.domain.policies import (
    REGISTRY,
    PolicyResource,
    check_level,
)
from support.in_process import serving
from support.jwt_issuer import AUDIENCE, ISSUER, Issuer
from support.pki import issue, make_ca

P = Permission
STALE = "1-ffff"
EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]
FRAUD = PolicyResource("fraud")
PRODUCTION = PolicyResource("fraud", "production")
STAGING = PolicyResource("fraud", "staging")

# Who is bound where: one principal per role on the model (admin on the
# registry), a deployer of production only, and a principal with nothing.
BINDINGS: dict[str, list[tuple[PolicyResource, Role]]] = {
    **{
        f"user:{role.name.lower()}": [(REGISTRY if role == Role.ADMIN else FRAUD, role)]
        for role in Role
    },
    "user:prod-deployer": [(PRODUCTION, Role.DEPLOYER)],
    "user:nobody": [],
}
ROOT = "user:root"  # --bootstrap-admin: builds the world


def holds(principal: str, permission: Permission, resource: PolicyResource) -> bool:
    """The role table's answer, computed without the server's code."""
    where = check_level(permission, resource)
    for bound_on, role in BINDINGS[principal]:
        if permission not in ROLES[role].permissions:
            continue
        if PERMISSIONS[permission].level < bound_on.level:
            continue  # a binding grants only what is checked at or below it
        if bound_on in where.chain():
            return True
    return False


def holds_anywhere(principal: str, permission: Permission) -> bool:
    return any(holds(principal, permission, r) for r, _ in BINDINGS[principal]) or holds(
        principal, permission, REGISTRY
    )


@dataclass
class World:
    rollout: str
    upload_id: str
    file_digest: str
    pending_version: str


@dataclass(frozen=True)
class Case:
    label: str
    method: str
    request: Callable[[World], Any]
    # (permission, resource) the call needs; "anywhere" for blob uploads.
    needs: tuple[Permission, PolicyResource | str] | None
    style: str = "unary"


_ids = itertools.count()
R = "/modelregistry.v1.RegistryService/"
A = "/modelregistry.v1.ArtifactService/"
RO = "/modelregistry.v1.RolloutService/"
EV = "/modelregistry.v1.EventService/"
AC = "/modelregistry.v1.AccessService/"
ED = "/modelregistry.v1.EdgeService/"
SG = "/modelregistry.v1.SignatureService/"


def _mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


def _rollout_request(cls: Any) -> Callable[[World], Any]:
    return lambda w: cls(name=w.rollout, etag=STALE)


CASES = [
    Case(
        "CreateModel",
        R + "CreateModel",
        lambda w: reg.CreateModelRequest(model_id=f"m{next(_ids)}"),
        (P.MODELS_CREATE, REGISTRY),
    ),
    Case(
        "GetModel",
        R + "GetModel",
        lambda w: reg.GetModelRequest(name="models/fraud"),
        (P.MODELS_GET, FRAUD),
    ),
    Case("ListModels", R + "ListModels", lambda w: reg.ListModelsRequest(), None),
    Case(
        "UpdateModel labels",
        R + "UpdateModel",
        lambda w: reg.UpdateModelRequest(
            model=pb.Model(name="models/fraud", labels={"a": "b"}, etag=STALE)
        ),
        (P.MODELS_UPDATE, FRAUD),
    ),
    Case(
        "UpdateModel protection",
        R + "UpdateModel",
        lambda w: reg.UpdateModelRequest(
            model=pb.Model(name="models/fraud", etag=STALE), update_mask=_mask("protected_aliases")
        ),
        (P.MODELS_SET_PROTECTION, FRAUD),
    ),
    Case(
        "UpdateModel quota",
        R + "UpdateModel",
        lambda w: reg.UpdateModelRequest(
            model=pb.Model(name="models/fraud", storage_quota_bytes=1 << 30, etag=STALE),
            update_mask=_mask("storage_quota_bytes"),
        ),
        (P.MODELS_SET_QUOTA, FRAUD),
    ),
    Case(
        "DeleteModel",
        R + "DeleteModel",
        lambda w: reg.DeleteModelRequest(name="models/fraud", etag=STALE, force=True),
        (P.MODELS_DELETE, FRAUD),
    ),
    Case(
        "CreateModelVersion",
        R + "CreateModelVersion",
        lambda w: reg.CreateModelVersionRequest(
            parent="models/fraud", model_version=pb.ModelVersion(source_uri="s3://b/x")
        ),
        (P.VERSIONS_CREATE, FRAUD),
    ),
    Case(
        "GetModelVersion",
        R + "GetModelVersion",
        lambda w: reg.GetModelVersionRequest(name="models/fraud/versions/1"),
        (P.VERSIONS_GET, FRAUD),
    ),
    Case(
        "ListModelVersions",
        R + "ListModelVersions",
        lambda w: reg.ListModelVersionsRequest(parent="models/fraud"),
        (P.VERSIONS_GET, FRAUD),
    ),
    Case(
        "UpdateModelVersion",
        R + "UpdateModelVersion",
        lambda w: reg.UpdateModelVersionRequest(
            model_version=pb.ModelVersion(
                name="models/fraud/versions/1", description="x", etag=STALE
            )
        ),
        (P.VERSIONS_UPDATE, FRAUD),
    ),
    Case(
        "DeleteModelVersion",
        R + "DeleteModelVersion",
        lambda w: reg.DeleteModelVersionRequest(name="models/fraud/versions/1", etag=STALE),
        (P.VERSIONS_DELETE, FRAUD),
    ),
    Case(
        "SetAlias production",
        R + "SetAlias",
        lambda w: reg.SetAliasRequest(
            alias=pb.Alias(
                name="models/fraud/aliases/production", version="models/fraud/versions/1"
            ),
            etag=STALE,
        ),
        (P.ALIASES_SET, PRODUCTION),
    ),
    Case(
        "SetAlias staging",
        R + "SetAlias",
        lambda w: reg.SetAliasRequest(
            alias=pb.Alias(name="models/fraud/aliases/staging", version="models/fraud/versions/1"),
            etag=STALE,
        ),
        (P.ALIASES_SET, STAGING),
    ),
    Case(
        "GetAlias",
        R + "GetAlias",
        lambda w: reg.GetAliasRequest(name="models/fraud/aliases/production"),
        (P.ALIASES_GET, PRODUCTION),
    ),
    Case(
        "ListAliases",
        R + "ListAliases",
        lambda w: reg.ListAliasesRequest(parent="models/fraud"),
        (P.ALIASES_GET, FRAUD),
    ),
    Case(
        "DeleteAlias",
        R + "DeleteAlias",
        lambda w: reg.DeleteAliasRequest(name="models/fraud/aliases/production", etag=STALE),
        (P.ALIASES_DELETE, PRODUCTION),
    ),
    Case(
        "ResolveAlias",
        R + "ResolveAlias",
        lambda w: reg.ResolveAliasRequest(name="models/fraud/aliases/production"),
        (P.ALIASES_GET, PRODUCTION),
    ),
    Case(
        "BatchSetAliases",
        R + "BatchSetAliases",
        lambda w: reg.BatchSetAliasesRequest(
            parent="models/fraud",
            requests=[
                reg.SetAliasRequest(
                    alias=pb.Alias(
                        name="models/fraud/aliases/production", version="models/fraud/versions/1"
                    ),
                    etag=STALE,
                )
            ],
        ),
        (P.ALIASES_SET, PRODUCTION),
    ),
    Case(
        "ApproveModelVersion",
        R + "ApproveModelVersion",
        lambda w: reg.ApproveModelVersionRequest(name="models/fraud/versions/1", etag=STALE),
        (P.VERSIONS_REVIEW, FRAUD),
    ),
    Case(
        "RejectModelVersion",
        R + "RejectModelVersion",
        lambda w: reg.RejectModelVersionRequest(name="models/fraud/versions/1", etag=STALE),
        (P.VERSIONS_REVIEW, FRAUD),
    ),
    Case(
        "Upload blob",
        A + "Upload",
        lambda w: art.UploadRequest(start=art.UploadStart(size_bytes=3)),
        (P.VERSIONS_UPLOAD, "anywhere"),
        "upload",
    ),
    Case(
        "Upload for a version",
        A + "Upload",
        lambda w: art.UploadRequest(start=art.UploadStart(size_bytes=3, version=w.pending_version)),
        (P.VERSIONS_UPLOAD, FRAUD),
        "upload",
    ),
    Case(
        "GetUpload",
        A + "GetUpload",
        lambda w: art.GetUploadRequest(upload_id=w.upload_id),
        (P.VERSIONS_UPLOAD, FRAUD),
    ),
    Case(
        "CancelUpload unknown",
        A + "CancelUpload",
        lambda w: art.CancelUploadRequest(upload_id="0" * 32),
        (P.VERSIONS_UPLOAD, "anywhere"),
    ),
    Case(
        "Download digest",
        A + "Download",
        lambda w: art.DownloadRequest(digest=w.file_digest),
        (P.ARTIFACTS_DOWNLOAD, FRAUD),
        "server_stream",
    ),
    Case(
        "Download version",
        A + "Download",
        lambda w: art.DownloadRequest(version="models/fraud/versions/1"),
        (P.ARTIFACTS_DOWNLOAD, FRAUD),
        "server_stream",
    ),
    Case(
        "Download alias",
        A + "Download",
        lambda w: art.DownloadRequest(alias="models/fraud/aliases/production"),
        (P.ARTIFACTS_DOWNLOAD, PRODUCTION),
        "server_stream",
    ),
    Case(
        "GetBlob",
        A + "GetBlob",
        lambda w: art.GetBlobRequest(digest=w.file_digest),
        (P.ARTIFACTS_DOWNLOAD, FRAUD),
    ),
    Case(
        "CollectGarbage",
        A + "CollectGarbage",
        lambda w: art.CollectGarbageRequest(dry_run=True),
        (P.BLOBS_COLLECT_GARBAGE, REGISTRY),
    ),
    Case(
        "StartRollout",
        RO + "StartRollout",
        lambda w: ro.StartRolloutRequest(
            alias="models/fraud/aliases/production",
            candidate_version="models/fraud/versions/2",
            alias_etag=STALE,
        ),
        (P.ROLLOUTS_START, PRODUCTION),
    ),
    Case(
        "GetRollout",
        RO + "GetRollout",
        lambda w: ro.GetRolloutRequest(name=w.rollout),
        (P.ROLLOUTS_GET, STAGING),
    ),
    Case(
        "ListRollouts",
        RO + "ListRollouts",
        lambda w: ro.ListRolloutsRequest(parent="models/fraud"),
        (P.ROLLOUTS_GET, FRAUD),
    ),
    *[
        Case(name, RO + name, _rollout_request(cls), (P.ROLLOUTS_UPDATE, STAGING))
        for name, cls in (
            ("AdvanceRollout", ro.AdvanceRolloutRequest),
            ("PauseRollout", ro.PauseRolloutRequest),
            ("ResumeRollout", ro.ResumeRolloutRequest),
            ("RollbackRollout", ro.RollbackRolloutRequest),
        )
    ],
    Case(
        "ListEvents",
        EV + "ListEvents",
        lambda w: ev.ListEventsRequest(filter=ev.EventFilter(model="models/fraud")),
        (P.EVENTS_LIST, FRAUD),
    ),
    Case(
        "Watch alias",
        EV + "Watch",
        lambda w: ev.WatchRequest(
            filter=ev.EventFilter(resource="models/fraud/aliases/production"), start_revision=1
        ),
        (P.EVENTS_LIST, PRODUCTION),
        "server_stream",
    ),
    Case(
        "GetIamPolicy",
        AC + "GetIamPolicy",
        lambda w: acc.GetIamPolicyRequest(resource="models/fraud"),
        (P.MODELS_GET_IAM_POLICY, FRAUD),
    ),
    Case(
        "GetIamPolicy registry",
        AC + "GetIamPolicy",
        lambda w: acc.GetIamPolicyRequest(resource="registry"),
        (P.REGISTRY_GET_IAM_POLICY, REGISTRY),
    ),
    Case(
        "SetIamPolicy",
        AC + "SetIamPolicy",
        lambda w: acc.SetIamPolicyRequest(resource="models/fraud", policy=acc.Policy(etag=STALE)),
        (P.MODELS_SET_IAM_POLICY, FRAUD),
    ),
    Case(
        "TestIamPermissions self",
        AC + "TestIamPermissions",
        lambda w: acc.TestIamPermissionsRequest(
            resource="models/fraud", permissions=["models.get"]
        ),
        None,
    ),
    Case(
        "TestIamPermissions other",
        AC + "TestIamPermissions",
        lambda w: acc.TestIamPermissionsRequest(
            resource="models/fraud", permissions=["models.get"], principal="user:someone"
        ),
        (P.MODELS_GET_IAM_POLICY, FRAUD),
    ),
    Case(
        "CreateServiceAccountToken",
        AC + "CreateServiceAccountToken",
        lambda w: acc.CreateServiceAccountTokenRequest(service_account="matrix"),
        (P.SERVICE_ACCOUNTS_CREATE_TOKEN, REGISTRY),
    ),
    Case(
        "ListServiceAccountTokens",
        AC + "ListServiceAccountTokens",
        lambda w: acc.ListServiceAccountTokensRequest(),
        (P.SERVICE_ACCOUNTS_LIST_TOKENS, REGISTRY),
    ),
    Case(
        "RevokeServiceAccountToken",
        AC + "RevokeServiceAccountToken",
        lambda w: acc.RevokeServiceAccountTokenRequest(
            name="serviceAccounts/matrix/tokens/0000000000000000"
        ),
        (P.SERVICE_ACCOUNTS_REVOKE_TOKEN, REGISTRY),
    ),
    Case(
        "ReportWarmState",
        ED + "ReportWarmState",
        lambda w: edge.ReportWarmStateRequest(
            region="eu-west", warm_versions=["models/fraud/versions/1"]
        ),
        (P.EDGES_REPORT, REGISTRY),
    ),
    Case(
        "AttachSignature",
        SG + "AttachSignature",
        lambda w: sig.AttachSignatureRequest(parent="models/fraud/versions/1", bundle=b"{}"),
        (P.VERSIONS_UPLOAD, FRAUD),
    ),
    Case(
        "ListSignatures",
        SG + "ListSignatures",
        lambda w: sig.ListSignaturesRequest(parent="models/fraud/versions/1"),
        (P.VERSIONS_GET, FRAUD),
    ),
    Case(
        "GetTrustPolicy",
        SG + "GetTrustPolicy",
        lambda w: sig.GetTrustPolicyRequest(name="models/fraud/trustPolicy"),
        (P.MODELS_GET, FRAUD),
    ),
    Case(
        "GetTrustPolicy default",
        SG + "GetTrustPolicy",
        lambda w: sig.GetTrustPolicyRequest(name="trustPolicies/default"),
        (P.MODELS_GET, REGISTRY),
    ),
    Case(
        "UpdateTrustPolicy",
        SG + "UpdateTrustPolicy",
        lambda w: sig.UpdateTrustPolicyRequest(
            policy=sig.TrustPolicy(name="models/fraud/trustPolicy", etag=STALE)
        ),
        (P.MODELS_SET_PROTECTION, FRAUD),
    ),
    Case(
        "UpdateTrustPolicy default",
        SG + "UpdateTrustPolicy",
        lambda w: sig.UpdateTrustPolicyRequest(
            policy=sig.TrustPolicy(name="trustPolicies/default", etag=STALE)
        ),
        (P.REGISTRY_SET_IAM_POLICY, REGISTRY),
    ),
]


def expected(principal: str, case: Case) -> bool:
    if case.needs is None:
        return True
    permission, resource = case.needs
    if resource == "anywhere":
        return holds_anywhere(principal, permission)
    assert isinstance(resource, PolicyResource)
    return holds(principal, permission, resource)


def test_cases_cover_every_rpc_and_agree_with_the_rules() -> None:
    assert {c.method for c in CASES} == set(RULES)
    for case in CASES:
        if case.needs is not None:
            held = {c.permission for c in RULES[case.method]}
            held |= {c.root_permission for c in RULES[case.method]}
            assert case.needs[0] in held, case.label


# -- the server, its principals and the world they act on ----------------------


@dataclass
class Credentials:
    """How each principal calls: a JWT in metadata, or its own certificate."""

    kind: str
    server_tls: dict[str, Any]
    jwt: Issuer | None = None
    ca: bytes = b""
    certs: dict[str, tuple[bytes, bytes]] | None = None

    def channel(self, address: str, principal: str) -> grpc.aio.Channel:
        if self.kind == "jwt":
            return grpc.aio.insecure_channel(address)
        assert self.certs is not None
        cert, key = self.certs[principal]
        creds = grpc.ssl_channel_credentials(self.ca, key, cert)
        return grpc.aio.secure_channel(address, creds)

    def metadata(self, principal: str) -> tuple[tuple[str, str], ...]:
        if self.kind != "jwt":
            return ()
        assert self.jwt is not None
        return (("authorization", f"Bearer {self.jwt.token(principal.removeprefix('user:'))}"),)

    def client(self, address: str, principal: str) -> RegistryClient:
        if self.kind == "jwt":
            assert self.jwt is not None
            return RegistryClient(address, token=self.jwt.token(principal.removeprefix("user:")))
        assert self.certs is not None
        cert, key = self.certs[principal]
        return RegistryClient(address, root_ca=self.ca, client_cert=cert, client_key=key)


def _credentials(kind: str, tmp_path: Path) -> tuple[Credentials, dict[str, Any]]:
    """The credentials, and the server settings that go with them."""
    if kind == "jwt":
        issuer = Issuer()
        jwks = issuer.write_jwks(tmp_path / "jwks.json")
        settings = {"jwt_jwks": str(jwks), "jwt_issuer": ISSUER, "jwt_audience": AUDIENCE}
        return Credentials("jwt", {}, jwt=issuer), settings
    ca, ca_cert, ca_key = make_ca("matrix-ca")
    server = issue(ca_cert, ca_key, "localhost", server=True)
    certs = {
        p: (lambda i: (i.cert, i.key))(
            issue(ca_cert, ca_key, p.removeprefix("user:"), server=False)
        )
        for p in [*BINDINGS, ROOT]
    }
    paths = {
        "tls_cert": server.write(tmp_path / "server.pem"),
        "tls_key": tmp_path / "server.key",
        "tls_client_ca": tmp_path / "ca.pem",
    }
    paths["tls_client_ca"].write_bytes(ca.cert)
    return Credentials("mtls", {}, ca=ca.cert, certs=certs), paths


async def _build_world(address: str, creds: Credentials, tmp_path: Path) -> World:
    async with creds.client(address, ROOT) as root:
        await root.create_model("fraud")
        for _ in range(2):
            await root.create_model_version("models/fraud", source_uri="s3://b/m")
        await root.approve_model_version("models/fraud/versions/1")
        await root.set_alias("models/fraud/aliases/production", 1)
        await root.set_alias("models/fraud/aliases/staging", 1)
        rollout = await root.start_rollout("models/fraud/aliases/staging", 2)
        model_dir = tmp_path / "model"
        model_dir.mkdir()
        (model_dir / "weights.bin").write_bytes(b"weights" * 100)
        pushed_to = await root.create_model_version("models/fraud")
        await root.push(pushed_to.name, model_dir)
        pending = await root.create_model_version("models/fraud")
        stub = artifact_stub(root.channel())
        call: Any = stub.Upload()  # type: ignore[call-arg]  # write/read style
        await call.write(
            art.UploadRequest(start=art.UploadStart(size_bytes=10, version=pending.name))
        )
        started = (await call.read()).started
        await call.done_writing()
        while await call.read() is not EOF:
            pass
        for principal, bindings in BINDINGS.items():
            for resource, role in bindings:
                await root.grant(str(resource), role.value, principal)
    file_digest = "sha256:" + hashlib.sha256(b"weights" * 100).hexdigest()
    return World(rollout.name, started.upload_id, file_digest, pending.name)


async def outcome(
    channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...], case: Case, world: World
) -> grpc.StatusCode:
    """The status the server answers `case` with (OK for a stream that started)."""
    request = case.request(world)
    codec: dict[str, Any] = {
        "request_serializer": type(request).SerializeToString,
        "response_deserializer": None,
    }
    call: Any
    try:
        if case.style == "unary":
            unary = channel.unary_unary(case.method, **codec)
            await unary(request, metadata=metadata, timeout=10)
            return grpc.StatusCode.OK
        if case.style == "server_stream":
            call = channel.unary_stream(case.method, **codec)(
                request, metadata=metadata, timeout=10
            )
        else:
            streaming: Any = channel.stream_stream(case.method, **codec)
            call = streaming(metadata=metadata, timeout=10)
            await call.write(request)
        first = await call.read()
        code = grpc.StatusCode.OK if first is not EOF else await call.code()
        call.cancel()
        return code
    except grpc.aio.AioRpcError as err:
        return err.code()


NEVER = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)


@pytest.mark.parametrize("kind", ["jwt", "mtls"])
async def test_permission_matrix(db_url: str, tmp_path: Path, kind: str) -> None:
    creds, settings = _credentials(kind, tmp_path)
    config = ServerConfig(
        listen="127.0.0.1:0",
        data_dir=tmp_path / "data",
        database_url=db_url,
        auth="required",
        bootstrap_admins=(ROOT,),
        **settings,
    )
    async with serving(config) as running:
        address = f"127.0.0.1:{running.port}"
        world = await _build_world(address, creds, tmp_path)
        wrong: list[str] = []
        for principal in BINDINGS:
            async with creds.channel(address, principal) as channel:
                metadata = creds.metadata(principal)
                for case in CASES:
                    code = await outcome(channel, metadata, case, world)
                    want = expected(principal, case)
                    got = code != grpc.StatusCode.PERMISSION_DENIED
                    if code in NEVER or got != want:
                        wanted = "allowed" if want else "PERMISSION_DENIED"
                        wrong.append(f"{principal:20} {case.label:28} {code.name} (want {wanted})")
        assert not wrong, "\n".join(wrong)
        await _lists_show_only_what_each_may_see(address, creds)


async def _lists_show_only_what_each_may_see(address: str, creds: Credentials) -> None:
    seen = {}
    for principal in ("user:viewer", "user:prod-deployer", "user:nobody", "user:admin"):
        async with creds.client(address, principal) as client:
            seen[principal] = sorted([m.name async for m in client.list_models()])
            events = await client.list_events_page()
            seen[principal + " events"] = sorted({e.model for e in events.events})
    assert seen["user:viewer"] == ["models/fraud"]
    assert seen["user:viewer events"] == ["models/fraud"]
    assert seen["user:nobody"] == [] and seen["user:prod-deployer"] == []
    assert seen["user:nobody events"] == []
    assert "models/fraud" in seen["user:admin"] and "" in seen["user:admin events"]
