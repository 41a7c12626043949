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
from ..service.rollouts import Rollouts
from .convert import rollout_to_pb

Ctx = Any  # grpc.aio.ServicerContext


class RolloutServicer(rpc_grpc.RolloutServiceServicer):
    def __init__(self, rollouts: Rollouts) -> None:
        self._rollouts = rollouts

    async def StartRollout(self, request: rpc.StartRolloutRequest, context: Ctx) -> pb.Rollout:
        rollout = await self._rollouts.start(
            parse_alias_name(request.alias, "alias"),
            parse_version_name(request.candidate_version, "candidate_version"),
            list(request.steps),
            request.alias_etag,
        )
        return rollout_to_pb(rollout)

    async def GetRollout(self, request: rpc.GetRolloutRequest, context: Ctx) -> pb.Rollout:
        return rollout_to_pb(await self._rollouts.get(parse_rollout_name(request.name)))

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
        rollout = await self._rollouts.advance(
            parse_rollout_name(request.name), request.etag, request.percent
        )
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
