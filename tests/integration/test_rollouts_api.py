"""Approvals, protected aliases, atomic alias moves, rollouts and alias history,
over a real server on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import grpc
import pytest
from google.protobuf import field_mask_pb2, timestamp_pb2
from modelregistry.v1 import registry_service_pb2 as rpc
from modelregistry.v1 import resources_pb2 as pb
from modelregistry.v1 import rollout_service_pb2 as rrpc
from modelregistry.v1 import rollout_service_pb2_grpc
from support.grpc_errors import expect_error, reason

if TYPE_CHECKING:
    from modelregistry.v1.registry_service_pb2_grpc import RegistryServiceAsyncStub
    from modelregistry.v1.rollout_service_pb2_grpc import RolloutServiceAsyncStub

PROD = "models/fraud/aliases/production"


@pytest.fixture
def rollouts(channel: grpc.aio.Channel) -> RolloutServiceAsyncStub:
    return rollout_service_pb2_grpc.RolloutServiceStub(channel)


async def setup_model(registry: RegistryServiceAsyncStub, versions: int = 3) -> None:
    await registry.CreateModel(rpc.CreateModelRequest(model_id="fraud"))
    for _ in range(versions):
        await registry.CreateModelVersion(
            rpc.CreateModelVersionRequest(
                parent="models/fraud", model_version=pb.ModelVersion(source_uri="s3://b/m")
            )
        )


def version(n: int) -> str:
    return f"models/fraud/versions/{n}"


async def set_alias(registry: RegistryServiceAsyncStub, name: str, n: int) -> pb.Alias:
    return await registry.SetAlias(
        rpc.SetAliasRequest(alias=pb.Alias(name=name, version=version(n)))
    )


async def test_protected_alias_needs_an_approved_version(
    registry: RegistryServiceAsyncStub,
) -> None:
    await setup_model(registry)
    await registry.UpdateModel(
        rpc.UpdateModelRequest(
            model=pb.Model(name="models/fraud", protected_aliases=["production"]),
            update_mask=field_mask_pb2.FieldMask(paths=["protected_aliases"]),
        )
    )
    await expect_error(
        set_alias(registry, PROD, 1), grpc.StatusCode.FAILED_PRECONDITION, "VERSION_NOT_APPROVED"
    )
    rejected = await registry.RejectModelVersion(
        rpc.RejectModelVersionRequest(name=version(1), comment="bad recall")
    )
    assert rejected.approval.state == pb.Approval.REJECTED
    assert rejected.approval.comment == "bad recall" and rejected.approval.actor == "anonymous"
    await expect_error(
        set_alias(registry, PROD, 1), grpc.StatusCode.FAILED_PRECONDITION, "VERSION_NOT_APPROVED"
    )
    approved = await registry.ApproveModelVersion(
        rpc.ApproveModelVersionRequest(name=version(1), etag=rejected.etag)
    )
    assert approved.approval.state == pb.Approval.APPROVED
    assert (await set_alias(registry, PROD, 1)).version == version(1)
    # Unprotected aliases take any READY version.
    await set_alias(registry, "models/fraud/aliases/staging", 2)


async def test_batch_set_aliases_is_all_or_nothing(registry: RegistryServiceAsyncStub) -> None:
    await setup_model(registry)
    prod = await set_alias(registry, PROD, 1)
    prev = await set_alias(registry, "models/fraud/aliases/previous", 1)
    moves = rpc.BatchSetAliasesRequest(
        parent="models/fraud",
        requests=[
            rpc.SetAliasRequest(alias=pb.Alias(name=PROD, version=version(2)), etag=prod.etag),
            rpc.SetAliasRequest(
                alias=pb.Alias(name="models/fraud/aliases/previous", version=version(1)),
                etag="1-99",  # stale: the whole batch must fail
            ),
        ],
    )
    await expect_error(registry.BatchSetAliases(moves), grpc.StatusCode.ABORTED, "ETAG_MISMATCH")
    assert (await registry.GetAlias(rpc.GetAliasRequest(name=PROD))).version == version(1)
    moves.requests[1].etag = prev.etag
    result = await registry.BatchSetAliases(moves)
    assert [a.version for a in result.aliases] == [version(2), version(1)]


async def test_rollout_steps_complete_and_resolve(
    registry: RegistryServiceAsyncStub, rollouts: RolloutServiceAsyncStub
) -> None:
    await setup_model(registry)
    await set_alias(registry, PROD, 1)
    r = await rollouts.StartRollout(
        rrpc.StartRolloutRequest(alias=PROD, candidate_version=version(2))
    )
    assert (r.percent, r.state, list(r.steps)) == (5, pb.Rollout.ACTIVE, [5, 25, 50, 100])
    resolved = await registry.ResolveAlias(rpc.ResolveAliasRequest(name=PROD))
    assert resolved.model_version.name == version(1)
    assert resolved.rollout.name == r.name and resolved.rollout.percent == 5
    assert resolved.candidate_version.name == version(2)
    # The alias is owned by the rollout while it runs.
    await expect_error(
        set_alias(registry, PROD, 3), grpc.StatusCode.FAILED_PRECONDITION, "ROLLOUT_IN_PROGRESS"
    )
    await expect_error(
        rollouts.StartRollout(rrpc.StartRolloutRequest(alias=PROD, candidate_version=version(3))),
        grpc.StatusCode.FAILED_PRECONDITION,
        "ROLLOUT_IN_PROGRESS",
    )
    await expect_error(
        registry.DeleteModelVersion(rpc.DeleteModelVersionRequest(name=version(2))),
        grpc.StatusCode.FAILED_PRECONDITION,
        "VERSION_IN_ROLLOUT",
    )
    percents = []
    for _ in range(3):
        r = await rollouts.AdvanceRollout(rrpc.AdvanceRolloutRequest(name=r.name, etag=r.etag))
        percents.append(r.percent)
    assert percents == [25, 50, 100] and r.state == pb.Rollout.COMPLETED
    resolved = await registry.ResolveAlias(rpc.ResolveAliasRequest(name=PROD))
    assert resolved.model_version.name == version(2)
    assert not resolved.HasField("rollout")
    await expect_error(
        rollouts.AdvanceRollout(rrpc.AdvanceRolloutRequest(name=r.name)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "ROLLOUT_FINISHED",
    )


async def test_pause_resume_and_rollback(
    registry: RegistryServiceAsyncStub, rollouts: RolloutServiceAsyncStub
) -> None:
    await setup_model(registry)
    await set_alias(registry, PROD, 1)
    r = await rollouts.StartRollout(
        rrpc.StartRolloutRequest(alias=PROD, candidate_version=version(2), steps=[10, 100])
    )
    r = await rollouts.PauseRollout(rrpc.PauseRolloutRequest(name=r.name, etag=r.etag))
    assert r.state == pb.Rollout.PAUSED
    await expect_error(
        rollouts.AdvanceRollout(rrpc.AdvanceRolloutRequest(name=r.name)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "ROLLOUT_NOT_ACTIVE",
    )
    r = await rollouts.ResumeRollout(rrpc.ResumeRolloutRequest(name=r.name))
    r = await rollouts.AdvanceRollout(rrpc.AdvanceRolloutRequest(name=r.name, percent=60))
    assert r.percent == 60
    r = await rollouts.RollbackRollout(rrpc.RollbackRolloutRequest(name=r.name))
    assert (r.state, r.percent) == (pb.Rollout.ROLLED_BACK, 0)
    resolved = await registry.ResolveAlias(rpc.ResolveAliasRequest(name=PROD))
    assert resolved.model_version.name == version(1) and not resolved.HasField("rollout")
    listed = await rollouts.ListRollouts(rrpc.ListRolloutsRequest(parent="models/fraud"))
    assert [x.name for x in listed.rollouts] == [r.name]
    active = await rollouts.ListRollouts(
        rrpc.ListRolloutsRequest(parent="models/fraud", active_only=True)
    )
    assert list(active.rollouts) == []


async def test_bad_rollout_requests(
    registry: RegistryServiceAsyncStub, rollouts: RolloutServiceAsyncStub
) -> None:
    await setup_model(registry)
    await set_alias(registry, PROD, 1)
    for steps in ([50, 25, 100], [5, 50], [0, 100], [5, 5, 100]):
        await expect_error(
            rollouts.StartRollout(
                rrpc.StartRolloutRequest(alias=PROD, candidate_version=version(2), steps=steps)
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_STEPS",
        )
    await expect_error(
        rollouts.StartRollout(rrpc.StartRolloutRequest(alias=PROD, candidate_version=version(1))),
        grpc.StatusCode.FAILED_PRECONDITION,
        "SAME_VERSION",
    )
    await expect_error(
        rollouts.GetRollout(rrpc.GetRolloutRequest(name="models/fraud/rollouts/0123456789ab")),
        grpc.StatusCode.NOT_FOUND,
        "ROLLOUT_NOT_FOUND",
    )
    r = await rollouts.StartRollout(
        rrpc.StartRolloutRequest(alias=PROD, candidate_version=version(2))
    )
    await expect_error(
        rollouts.AdvanceRollout(rrpc.AdvanceRolloutRequest(name=r.name, percent=3)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_PERCENT",
    )


async def test_concurrent_rollout_operations_have_one_winner(
    registry: RegistryServiceAsyncStub, rollouts: RolloutServiceAsyncStub
) -> None:
    await setup_model(registry)
    await set_alias(registry, PROD, 1)
    r = await rollouts.StartRollout(
        rrpc.StartRolloutRequest(alias=PROD, candidate_version=version(2))
    )

    async def advance() -> str:
        try:
            await rollouts.AdvanceRollout(rrpc.AdvanceRolloutRequest(name=r.name, etag=r.etag))
            return "won"
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.ABORTED
            return reason(err)

    outcomes = await asyncio.gather(*(advance() for _ in range(10)))
    assert sorted(outcomes) == ["ETAG_MISMATCH"] * 9 + ["won"]
    got = await rollouts.GetRollout(rrpc.GetRolloutRequest(name=r.name))
    assert got.percent == 25


async def test_resolve_alias_at_a_point_in_time(registry: RegistryServiceAsyncStub) -> None:
    await setup_model(registry)
    before_any = timestamp_pb2.Timestamp()
    before_any.FromMicroseconds(time.time_ns() // 1000)
    await asyncio.sleep(0.01)
    await set_alias(registry, PROD, 1)
    await asyncio.sleep(0.01)
    on_v1 = timestamp_pb2.Timestamp()
    on_v1.FromMicroseconds(time.time_ns() // 1000)
    await asyncio.sleep(0.01)
    await set_alias(registry, PROD, 2)
    then = await registry.ResolveAlias(rpc.ResolveAliasRequest(name=PROD, read_time=on_v1))
    assert then.model_version.name == version(1)
    now = await registry.ResolveAlias(rpc.ResolveAliasRequest(name=PROD))
    assert now.model_version.name == version(2) and now.revision > then.revision
    await expect_error(
        registry.ResolveAlias(rpc.ResolveAliasRequest(name=PROD, read_time=before_any)),
        grpc.StatusCode.NOT_FOUND,
        "ALIAS_NOT_FOUND",
    )
