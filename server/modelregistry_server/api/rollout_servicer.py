"""RolloutService over gRPC: parse, call the use case, convert."""

from __future__ import annotations

from typing import Any

from modelregistry.v1 import resources_pb2 as pb
from modelregistry.v1 import rollout_service_pb2 as rpc
from modelregistry.v1 import rollout_service_pb2_grpc as rpc_grpc

from ..domain.names import (
    parse_alias_name,
    parse_model_name,
    parse_rollout_name,
    parse_version_name,
)
from ..edge.warm_states import WarmStates
from ..service.rollouts import Rollouts
from .convert import rollout_to_pb, timestamp

Ctx = Any  # grpc.aio.ServicerContext


class RolloutServicer(rpc_grpc.RolloutServiceServicer):
    def __init__(self, rollouts: Rollouts, warm: WarmStates | None = None) -> None:
        """`warm`: the regional edges' warm state (on a primary; an edge has none)."""
        self._rollouts = rollouts
        self._warm = warm

    async def StartRollout(self, request: rpc.StartRolloutRequest, context: Ctx) -> pb.Rollout:
        rollout = await self._rollouts.start(
            parse_alias_name(request.alias, "alias"),
            parse_version_name(request.candidate_version, "candidate_version"),
            list(request.steps),
            request.alias_etag,
        )
        return rollout_to_pb(rollout)

    async def GetRollout(self, request: rpc.GetRolloutRequest, context: Ctx) -> pb.Rollout:
        rollout = await self._rollouts.get(parse_rollout_name(request.name))
        message = rollout_to_pb(rollout)
        if self._warm is not None:
            for region in await self._warm.of_version(rollout.candidate_version):
                state = message.warm_regions.add(region=region.region, warm=region.warm)
                if region.warm:
                    state.warm_time.CopyFrom(timestamp(region.warm_time_us))
        return message

    async def ListRollouts(
        self, request: rpc.ListRolloutsRequest, context: Ctx
    ) -> rpc.ListRolloutsResponse:
        rollouts, token = await self._rollouts.list(
            parse_model_name(request.parent, "parent"),
            request.page_size,
            request.page_token,
            request.active_only,
        )
        return rpc.ListRolloutsResponse(
            rollouts=[rollout_to_pb(r) for r in rollouts], next_page_token=token
        )

    async def AdvanceRollout(self, request: rpc.AdvanceRolloutRequest, context: Ctx) -> pb.Rollout:
        name = parse_rollout_name(request.name)
        if request.require_warm and self._warm is not None:
            current = await self._rollouts.get(name)
            await self._warm.require(current.candidate_version)
        rollout = await self._rollouts.advance(name, request.etag, request.percent)
        return rollout_to_pb(rollout)

    async def PauseRollout(self, request: rpc.PauseRolloutRequest, context: Ctx) -> pb.Rollout:
        rollout = await self._rollouts.pause(parse_rollout_name(request.name), request.etag)
        return rollout_to_pb(rollout)

    async def ResumeRollout(self, request: rpc.ResumeRolloutRequest, context: Ctx) -> pb.Rollout:
        rollout = await self._rollouts.resume(parse_rollout_name(request.name), request.etag)
        return rollout_to_pb(rollout)

    async def RollbackRollout(
        self, request: rpc.RollbackRolloutRequest, context: Ctx
    ) -> pb.Rollout:
        rollout = await self._rollouts.rollback(parse_rollout_name(request.name), request.etag)
        return rollout_to_pb(rollout)
