"""AccessService over gRPC: parse the request, call the use case, convert the result."""

from __future__ import annotations

from typing import Any

from modelregistry.v1 import access_service_pb2 as rpc
from modelregistry.v1 import access_service_pb2_grpc as rpc_grpc

from ..domain import request_context
from ..domain.policies import Decision, Policy
from ..domain.tokens import ServiceAccountToken
from ..service.access import Access
from .convert import timestamp

Ctx = Any  # grpc.aio.ServicerContext


def policy_to_pb(policy: Policy) -> rpc.Policy:
    return rpc.Policy(
        bindings=[rpc.Binding(role=b.role.value, members=b.members) for b in policy.bindings],
        etag=policy.etag,
    )


def token_to_pb(t: ServiceAccountToken) -> rpc.ServiceAccountToken:
    out = rpc.ServiceAccountToken(
        name=t.name,
        service_account=t.service_account,
        token_id=t.token_id,
        description=t.description,
        creator=t.creator,
        create_time=timestamp(t.create_time_us),
    )
    if t.expire_time_us:
        out.expire_time.CopyFrom(timestamp(t.expire_time_us))
    if t.revoke_time_us:
        out.revoke_time.CopyFrom(timestamp(t.revoke_time_us))
    return out


def check_to_pb(d: Decision) -> rpc.PermissionCheck:
    out = rpc.PermissionCheck(
        permission=d.permission.value, granted=d.allowed, explanation=d.explain()
    )
    if d.grant is not None:
        out.role = d.grant.role.value
        out.bound_on = str(d.grant.resource)
        out.member = d.grant.member
    return out


class AccessServicer(rpc_grpc.AccessServiceServicer):
    def __init__(self, access: Access) -> None:
        self._access = access

    async def GetIamPolicy(self, request: rpc.GetIamPolicyRequest, context: Ctx) -> rpc.Policy:
        return policy_to_pb(await self._access.get_policy(request.resource))

    async def SetIamPolicy(self, request: rpc.SetIamPolicyRequest, context: Ctx) -> rpc.Policy:
        bindings = [(b.role, list(b.members)) for b in request.policy.bindings]
        policy = await self._access.set_policy(request.resource, bindings, request.policy.etag)
        return policy_to_pb(policy)

    async def TestIamPermissions(
        self, request: rpc.TestIamPermissionsRequest, context: Ctx
    ) -> rpc.TestIamPermissionsResponse:
        who, decisions = await self._access.test_permissions(
            request.resource,
            list(request.permissions),
            request.principal,
            request_context.current_principal(),
        )
        return rpc.TestIamPermissionsResponse(
            permissions=[d.permission.value for d in decisions if d.allowed],
            checks=[check_to_pb(d) for d in decisions],
            principal=str(who),
        )

    async def CreateServiceAccountToken(
        self, request: rpc.CreateServiceAccountTokenRequest, context: Ctx
    ) -> rpc.CreateServiceAccountTokenResponse:
        ttl_s = request.ttl.ToTimedelta().total_seconds() if request.HasField("ttl") else 0.0
        issued = await self._access.create_token(
            request.service_account, request.description, ttl_s, request_context.current_actor()
        )
        return rpc.CreateServiceAccountTokenResponse(
            token=token_to_pb(issued.record), secret=issued.secret
        )

    async def ListServiceAccountTokens(
        self, request: rpc.ListServiceAccountTokensRequest, context: Ctx
    ) -> rpc.ListServiceAccountTokensResponse:
        tokens, next_token = await self._access.list_tokens(
            request.service_account, request.show_inactive, request.page_size, request.page_token
        )
        return rpc.ListServiceAccountTokensResponse(
            tokens=[token_to_pb(t) for t in tokens], next_page_token=next_token
        )

    async def RevokeServiceAccountToken(
        self, request: rpc.RevokeServiceAccountTokenRequest, context: Ctx
    ) -> rpc.ServiceAccountToken:
        return token_to_pb(await self._access.revoke_token(request.name))
