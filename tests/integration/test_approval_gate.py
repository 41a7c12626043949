"""The approval gate's holes, each closed, over a real server on SQLite and
PostgreSQL: a protected alias only ever points at an APPROVED version."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
import pytest
from google.protobuf import field_mask_pb2
from modelregistry.v1 import registry_service_pb2 as rpc
from modelregistry.v1 import resources_pb2 as pb
from modelregistry.v1 import rollout_service_pb2 as rrpc
from modelregistry.v1 import rollout_service_pb2_grpc
from support.grpc_errors import expect_error, reason

if TYPE_CHECKING:
    from modelregistry.v1.registry_service_pb2_grpc import RegistryServiceAsyncStub

PROD = "models/fraud/aliases/production"
FAILED = grpc.StatusCode.FAILED_PRECONDITION


async def model_with_versions(registry: RegistryServiceAsyncStub, n: int = 2) -> None:
    await registry.CreateModel(rpc.CreateModelRequest(model_id="fraud"))
    for _ in range(n):
        await registry.CreateModelVersion(
            rpc.CreateModelVersionRequest(
                parent="models/fraud", model_version=pb.ModelVersion(source_uri="s3://b/m")
            )
        )


async def protect(registry: RegistryServiceAsyncStub, *aliases: str) -> pb.Model:
    return await registry.UpdateModel(
        rpc.UpdateModelRequest(
            model=pb.Model(name="models/fraud", protected_aliases=list(aliases)),
            update_mask=field_mask_pb2.FieldMask(paths=["protected_aliases"]),
        )
    )


async def point(registry: RegistryServiceAsyncStub, n: int) -> None:
    await registry.SetAlias(
        rpc.SetAliasRequest(alias=pb.Alias(name=PROD, version=f"models/fraud/versions/{n}"))
    )


async def test_create_model_keeps_protected_aliases(registry: RegistryServiceAsyncStub) -> None:
    created = await registry.CreateModel(
        rpc.CreateModelRequest(
            model_id="fraud",
            model=pb.Model(protected_aliases=["production"], separation_of_duties=True),
        )
    )
    assert list(created.protected_aliases) == ["production"]
    assert created.separation_of_duties
    await registry.CreateModelVersion(
        rpc.CreateModelVersionRequest(
            parent="models/fraud", model_version=pb.ModelVersion(source_uri="s3://b/m")
        )
    )
    await expect_error(
        registry.SetAlias(
            rpc.SetAliasRequest(alias=pb.Alias(name=PROD, version="models/fraud/versions/1"))
        ),
        FAILED,
        "VERSION_NOT_APPROVED",
    )


async def test_protecting_an_alias_on_an_unapproved_version_is_refused(
    registry: RegistryServiceAsyncStub,
) -> None:
    await model_with_versions(registry)
    await point(registry, 1)
    await expect_error(protect(registry, "production"), FAILED, "VERSION_NOT_APPROVED")
    model = await registry.GetModel(rpc.GetModelRequest(name="models/fraud"))
    assert list(model.protected_aliases) == []
    await registry.ApproveModelVersion(
        rpc.ApproveModelVersionRequest(name="models/fraud/versions/1")
    )
    assert list((await protect(registry, "production")).protected_aliases) == ["production"]
    # Aliases that do not exist yet may be protected: they start out gated.
    assert len((await protect(registry, "production", "canary")).protected_aliases) == 2


async def test_rejecting_or_archiving_a_protected_target_is_refused(
    registry: RegistryServiceAsyncStub,
) -> None:
    await model_with_versions(registry)
    await registry.ApproveModelVersion(
        rpc.ApproveModelVersionRequest(name="models/fraud/versions/1")
    )
    await point(registry, 1)
    await protect(registry, "production")
    await expect_error(
        registry.RejectModelVersion(rpc.RejectModelVersionRequest(name="models/fraud/versions/1")),
        FAILED,
        "PROTECTED_ALIAS_TARGET",
    )
    await expect_error(
        registry.UpdateModelVersion(
            rpc.UpdateModelVersionRequest(
                model_version=pb.ModelVersion(
                    name="models/fraud/versions/1", state=pb.ModelVersion.ARCHIVED
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["state"]),
            )
        ),
        FAILED,
        "VERSION_HAS_ALIASES",
    )
    resolved = await registry.ResolveAlias(rpc.ResolveAliasRequest(name=PROD))
    assert resolved.model_version.approval.state == pb.Approval.APPROVED
    # Unprotected, the same version may be rejected (the alias is ungated).
    await protect(registry)
    await registry.RejectModelVersion(rpc.RejectModelVersionRequest(name="models/fraud/versions/1"))


async def test_rejecting_the_candidate_of_a_protected_rollout_is_refused(
    registry: RegistryServiceAsyncStub, channel: grpc.aio.Channel
) -> None:
    await model_with_versions(registry)
    for n in (1, 2):
        await registry.ApproveModelVersion(
            rpc.ApproveModelVersionRequest(name=f"models/fraud/versions/{n}")
        )
    await point(registry, 1)
    await protect(registry, "production")
    rollouts = rollout_service_pb2_grpc.RolloutServiceStub(channel)
    await rollouts.StartRollout(
        rrpc.StartRolloutRequest(alias=PROD, candidate_version="models/fraud/versions/2")
    )
    await expect_error(
        registry.RejectModelVersion(rpc.RejectModelVersionRequest(name="models/fraud/versions/2")),
        FAILED,
        "PROTECTED_ALIAS_TARGET",
    )


async def test_separation_of_duties_needs_another_reviewer(
    registry: RegistryServiceAsyncStub,
) -> None:
    """Without authentication every caller here is `anonymous`: the creator
    and the reviewer are the same principal, so the review is refused."""
    await registry.CreateModel(
        rpc.CreateModelRequest(model_id="fraud", model=pb.Model(separation_of_duties=True))
    )
    created = await registry.CreateModelVersion(
        rpc.CreateModelVersionRequest(
            parent="models/fraud", model_version=pb.ModelVersion(source_uri="s3://b/m")
        )
    )
    assert created.creator == "anonymous"
    with pytest.raises(grpc.aio.AioRpcError) as exc:
        await registry.ApproveModelVersion(rpc.ApproveModelVersionRequest(name=created.name))
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reason(exc.value) == "SEPARATION_OF_DUTIES"
