"""The access table as enforced: every RPC has a rule, and each rule finds
the right resource in the request (without a server: fakes for storage)."""

from __future__ import annotations

import pytest
from google.protobuf import field_mask_pb2
from modelregistry.v1 import (
    access_service_pb2,
    artifact_service_pb2,
    edge_service_pb2,
    event_service_pb2,
    registry_service_pb2,
    rollout_service_pb2,
    signature_service_pb2,
)
from modelregistry.v1 import access_service_pb2 as acc
from modelregistry.v1 import artifact_service_pb2 as art
from modelregistry.v1 import event_service_pb2 as ev
from modelregistry.v1 import registry_service_pb2 as reg
from modelregistry.v1 import resources_pb2 as pb
from modelregistry.v1 import rollout_service_pb2 as ro
from modelregistry_server.api.access import AccessControl, field_values, name_resource
from modelregistry_server.api.access_rules import RULES
from modelregistry_server.auth.authorizer import Authorizer
from modelregistry_server.domain.errors import InvalidArgument, PermissionDenied
from modelregistry_server.domain.permissions import Role
from modelregistry_server.domain.policies import REGISTRY, PolicyResource
from modelregistry_server.domain.principals import Principal, user
from support.access_fakes import FakeLookups, FakePolicies

DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
def store() -> FakePolicies:
    return FakePolicies()


@pytest.fixture
def access(store: FakePolicies) -> AccessControl:
    return AccessControl(Authorizer(store, frozenset({"user:root"})), FakeLookups())


ALICE = user("alice")
FRAUD = PolicyResource("fraud")


async def allowed(access: AccessControl, method: str, request: object, who: Principal) -> bool:
    """`method` as `Service.Method`."""
    service, name = method.split(".")
    try:
        await access.authorize(RULES_PREFIX[service] + name, request, who, "r1")
    except PermissionDenied:
        return False
    return True


RULES_PREFIX = {
    "RegistryService": "/modelregistry.v1.RegistryService/",
    "ArtifactService": "/modelregistry.v1.ArtifactService/",
    "RolloutService": "/modelregistry.v1.RolloutService/",
    "EventService": "/modelregistry.v1.EventService/",
    "AccessService": "/modelregistry.v1.AccessService/",
}


def test_every_rpc_has_a_rule_and_every_rule_an_rpc() -> None:
    methods = {
        f"/{service.full_name}/{m.name}"
        for module in (
            registry_service_pb2,
            artifact_service_pb2,
            rollout_service_pb2,
            event_service_pb2,
            access_service_pb2,
            edge_service_pb2,
            signature_service_pb2,
        )
        for service in module.DESCRIPTOR.services_by_name.values()
        for m in service.methods
    }
    assert methods == set(RULES)


def test_names_map_to_policy_resources() -> None:
    assert name_resource("models/fraud", "name") == FRAUD
    assert name_resource("models/fraud/versions/3", "name") == FRAUD
    assert name_resource("models/fraud/aliases/prod", "name") == PolicyResource("fraud", "prod")
    assert name_resource("models/fraud/rollouts/" + "0" * 12, "name") == FRAUD
    with pytest.raises(InvalidArgument):
        name_resource("models/fraud/versions/x", "name")
    request = reg.BatchSetAliasesRequest(
        requests=[
            reg.SetAliasRequest(alias=pb.Alias(name="models/m/aliases/a")),
            reg.SetAliasRequest(alias=pb.Alias(name="models/m/aliases/b")),
        ]
    )
    assert field_values(request, "requests[].alias.name") == [
        "models/m/aliases/a",
        "models/m/aliases/b",
    ]


async def test_denials_name_the_missing_permission(access: AccessControl) -> None:
    with pytest.raises(PermissionDenied) as exc:
        await access.authorize(
            RULES_PREFIX["RegistryService"] + "GetModel",
            reg.GetModelRequest(name="models/fraud"),
            ALICE,
            "r1",
        )
    assert exc.value.reason == "IAM_PERMISSION_DENIED"
    assert exc.value.metadata == {
        "permission": "models.get",
        "resource": "models/fraud",
        "principal": "user:alice",
    }


async def test_only_owners_change_protection(access: AccessControl, store: FakePolicies) -> None:
    store.bind(FRAUD, Role.PUBLISHER, "user:alice")
    labels = reg.UpdateModelRequest(
        model=pb.Model(name="models/fraud", labels={"a": "b"}),
    )
    protect = reg.UpdateModelRequest(
        model=pb.Model(name="models/fraud"),
        update_mask=field_mask_pb2.FieldMask(paths=["protected_aliases"]),
    )
    star = reg.UpdateModelRequest(
        model=pb.Model(name="models/fraud"), update_mask=field_mask_pb2.FieldMask(paths=["*"])
    )
    # Publishers may not update the model at all; owners may do both.
    assert not await allowed(access, "RegistryService.UpdateModel", labels, ALICE)
    store.bind(FRAUD, Role.OWNER, "user:bob")
    access.authorizer.invalidate()
    bob = user("bob")
    for request in (labels, protect, star):
        assert await allowed(access, "RegistryService.UpdateModel", request, bob)
    checks = RULES[RULES_PREFIX["RegistryService"] + "UpdateModel"]
    assert {c.permission.value for c in checks if c.permission} == {
        "models.update",
        "models.setProtection",
        "models.setQuota",
    }


async def test_aliases_are_checked_one_by_one(access: AccessControl, store: FakePolicies) -> None:
    store.bind(PolicyResource("fraud", "staging"), Role.DEPLOYER, "user:alice")
    staging = reg.SetAliasRequest(alias=pb.Alias(name="models/fraud/aliases/staging"))
    production = reg.SetAliasRequest(alias=pb.Alias(name="models/fraud/aliases/production"))
    assert await allowed(access, "RegistryService.SetAlias", staging, ALICE)
    assert not await allowed(access, "RegistryService.SetAlias", production, ALICE)
    batch = reg.BatchSetAliasesRequest(parent="models/fraud", requests=[staging, production])
    assert not await allowed(access, "RegistryService.BatchSetAliases", batch, ALICE)
    batch = reg.BatchSetAliasesRequest(parent="models/fraud", requests=[staging])
    assert await allowed(access, "RegistryService.BatchSetAliases", batch, ALICE)


async def test_rollouts_are_checked_on_their_alias(
    access: AccessControl, store: FakePolicies
) -> None:
    store.bind(PolicyResource("fraud", "production"), Role.DEPLOYER, "user:alice")
    known = ro.AdvanceRolloutRequest(name="models/fraud/rollouts/" + "0" * 12)
    unknown = ro.AdvanceRolloutRequest(name="models/fraud/rollouts/" + "1" * 12)
    assert await allowed(access, "RolloutService.AdvanceRollout", known, ALICE)
    # Unknown rollout: decided on the model, so the answer does not reveal existence.
    assert not await allowed(access, "RolloutService.AdvanceRollout", unknown, ALICE)


async def test_uploads_and_blobs(access: AccessControl, store: FakePolicies) -> None:
    store.bind(FRAUD, Role.PUBLISHER, "user:alice")
    bare = art.UploadRequest(start=art.UploadStart(size_bytes=1))
    for_fraud = art.UploadRequest(start=art.UploadStart(version="models/fraud/versions/1"))
    for_other = art.UploadRequest(start=art.UploadStart(version="models/other/versions/1"))
    resume = art.UploadRequest(start=art.UploadStart(upload_id="a" * 32))
    assert await allowed(access, "ArtifactService.Upload", bare, ALICE)
    assert await allowed(access, "ArtifactService.Upload", for_fraud, ALICE)
    assert await allowed(access, "ArtifactService.Upload", resume, ALICE)
    assert not await allowed(access, "ArtifactService.Upload", for_other, ALICE)
    nobody = user("nobody")
    assert not await allowed(access, "ArtifactService.Upload", bare, nobody)
    get = art.GetUploadRequest(upload_id="b" * 32)
    assert await allowed(access, "ArtifactService.GetUpload", get, ALICE)
    assert not await allowed(access, "ArtifactService.GetUpload", get, nobody)
    by_digest = art.DownloadRequest(digest=DIGEST)
    assert await allowed(access, "ArtifactService.Download", by_digest, ALICE)
    assert not await allowed(access, "ArtifactService.Download", by_digest, nobody)
    assert not await allowed(
        access, "ArtifactService.GetBlob", art.GetBlobRequest(digest=DIGEST), nobody
    )
    # A download that names nothing still needs the permission (on the registry).
    assert not await allowed(access, "ArtifactService.Download", art.DownloadRequest(), ALICE)


async def test_lists_and_streams_get_a_visibility(
    access: AccessControl, store: FakePolicies
) -> None:
    store.bind(FRAUD, Role.VIEWER, "user:alice")
    store.bind(PolicyResource("other", "production"), Role.VIEWER, "user:alice")
    method = RULES_PREFIX["RegistryService"] + "ListModels"
    visibility = await access.authorize(method, reg.ListModelsRequest(), ALICE, "r")
    assert visibility is not None
    assert await visibility.models() == frozenset({"fraud"})
    store.bind(REGISTRY, Role.VIEWER, "user:alice")
    access.authorizer.invalidate()
    assert await visibility.models() is None  # everything, recomputed after the change
    watch = RULES_PREFIX["EventService"] + "Watch"
    named = ev.WatchRequest(filter=ev.EventFilter(model="models/secret"))
    assert await access.authorize(watch, named, ALICE, "r") is None  # registry viewer
    with pytest.raises(PermissionDenied):
        await access.authorize(watch, named, user("bob"), "r")


async def test_policies_need_root_permissions_on_the_registry(
    access: AccessControl, store: FakePolicies
) -> None:
    store.bind(REGISTRY, Role.OWNER, "user:alice")
    model = acc.SetIamPolicyRequest(resource="models/fraud")
    root = acc.SetIamPolicyRequest(resource="registry")
    assert await allowed(access, "AccessService.SetIamPolicy", model, ALICE)
    assert not await allowed(access, "AccessService.SetIamPolicy", root, ALICE)
    assert await allowed(access, "AccessService.SetIamPolicy", root, user("root"))
    self_test = acc.TestIamPermissionsRequest(resource="registry", permissions=["models.get"])
    other = acc.TestIamPermissionsRequest(resource="models/fraud", principal="user:carol")
    bob = user("bob")
    assert await allowed(access, "AccessService.TestIamPermissions", self_test, bob)
    assert not await allowed(access, "AccessService.TestIamPermissions", other, bob)
    assert await allowed(access, "AccessService.TestIamPermissions", other, ALICE)


async def test_decisions_are_cached_until_a_policy_changes(
    access: AccessControl, store: FakePolicies
) -> None:
    store.bind(FRAUD, Role.VIEWER, "user:alice")
    request = reg.GetModelRequest(name="models/fraud")
    for _ in range(5):
        assert await allowed(access, "RegistryService.GetModel", request, ALICE)
    assert store.reads == 1
    store.policies.clear()
    assert await allowed(access, "RegistryService.GetModel", request, ALICE)  # still cached
    access.authorizer.invalidate()
    assert not await allowed(access, "RegistryService.GetModel", request, ALICE)
