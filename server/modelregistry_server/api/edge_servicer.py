"""EdgeService over gRPC: parse, call the use case, convert."""

from __future__ import annotations

from typing import Any

from modelregistry.v1 import edge_service_pb2 as rpc
from modelregistry.v1 import edge_service_pb2_grpc as rpc_grpc
from modelregistry.v1.error_reasons import ErrorReason

from ..domain import errors
from ..domain.names import parse_version_name
from ..edge.warm_states import MAX_WARM_VERSIONS, WarmStates, check_region

Ctx = Any  # grpc.aio.ServicerContext


class EdgeServicer(rpc_grpc.EdgeServiceServicer):
    def __init__(self, warm: WarmStates) -> None:
        self._warm = warm

    async def ReportWarmState(
        self, request: rpc.ReportWarmStateRequest, context: Ctx
    ) -> rpc.ReportWarmStateResponse:
        region = check_region(request.region)
        if len(request.warm_versions) > MAX_WARM_VERSIONS:
            raise errors.InvalidArgument(
                ErrorReason.INVALID_FIELD,
                f"warm_versions: at most {MAX_WARM_VERSIONS}",
                "warm_versions",
            )
        versions = [parse_version_name(v, "warm_versions") for v in request.warm_versions]
        return rpc.ReportWarmStateResponse(time_us=await self._warm.report(region, versions))
