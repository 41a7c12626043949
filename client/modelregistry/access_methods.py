"""Access-control methods of `RegistryClient`: policies, permission tests,
service-account tokens.

Kept apart from client.py so each stays small; `RegistryClient` inherits
them and supplies the core (channel, stubs, unary calls). `grant` and
`revoke_role` are read-modify-write loops on the policy's etag, so two
people granting at once both get their binding.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import grpc
from google.protobuf import duration_pb2

from .core import Core
from .errors import RegistryError
from .v1 import access_service_pb2 as acc

ETAG_RETRIES = 5


class AccessMethods:
    _core: Core

    # Policies

    async def get_iam_policy(self, resource: str, *, request_id: str | None = None) -> acc.Policy:
        """`resource`: `registry`, `models/{model}` or `models/{model}/aliases/{alias}`."""
        request = acc.GetIamPolicyRequest(resource=resource)
        return await self._core.call(
            self._core.stubs.access.GetIamPolicy, request, request_id, read=True
        )

    async def set_iam_policy(
        self, resource: str, policy: acc.Policy, *, request_id: str | None = None
    ) -> acc.Policy:
        """Replace the policy; conditional on `policy.etag` when it is set."""
        request = acc.SetIamPolicyRequest(resource=resource, policy=policy)
        return await self._core.call(
            self._core.stubs.access.SetIamPolicy, request, request_id, read=False
        )

    async def _edit_policy(
        self, resource: str, role: str, member: str, add: bool, request_id: str | None
    ) -> acc.Policy:
        for attempt in range(ETAG_RETRIES):
            policy = await self.get_iam_policy(resource, request_id=request_id)
            members = {m for b in policy.bindings if b.role == role for m in b.members}
            if (member in members) == add:
                return policy
            members = members | {member} if add else members - {member}
            kept = [b for b in policy.bindings if b.role != role]
            if members:
                kept.append(acc.Binding(role=role, members=sorted(members)))
            edited = acc.Policy(bindings=kept, etag=policy.etag)
            try:
                return await self.set_iam_policy(resource, edited, request_id=request_id)
            except RegistryError as err:
                if err.code != grpc.StatusCode.ABORTED or attempt == ETAG_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    async def grant(
        self, resource: str, role: str, member: str, *, request_id: str | None = None
    ) -> acc.Policy:
        """Add `member` to `role` on `resource` (no-op if already there)."""
        return await self._edit_policy(resource, role, member, True, request_id)

    async def revoke_role(
        self, resource: str, role: str, member: str, *, request_id: str | None = None
    ) -> acc.Policy:
        """Remove `member` from `role` on `resource` (no-op if not there)."""
        return await self._edit_policy(resource, role, member, False, request_id)

    async def test_iam_permissions(
        self,
        resource: str,
        permissions: list[str],
        *,
        principal: str = "",
        request_id: str | None = None,
    ) -> acc.TestIamPermissionsResponse:
        request = acc.TestIamPermissionsRequest(
            resource=resource, permissions=permissions, principal=principal
        )
        return await self._core.call(
            self._core.stubs.access.TestIamPermissions, request, request_id, read=True
        )

    # Service-account tokens

    async def create_service_account_token(
        self,
        service_account: str,
        *,
        ttl: timedelta | None = None,
        description: str = "",
        request_id: str | None = None,
    ) -> acc.CreateServiceAccountTokenResponse:
        """The response's `secret` is the bearer token; it is never shown again."""
        request = acc.CreateServiceAccountTokenRequest(
            service_account=service_account, description=description
        )
        if ttl is not None:
            request.ttl.CopyFrom(duration_pb2.Duration(seconds=int(ttl.total_seconds())))
        return await self._core.call(
            self._core.stubs.access.CreateServiceAccountToken, request, request_id, read=False
        )

    async def list_service_account_tokens(
        self,
        service_account: str = "",
        *,
        show_inactive: bool = False,
        page_size: int = 0,
        request_id: str | None = None,
    ) -> AsyncIterator[acc.ServiceAccountToken]:
        token = ""
        while True:
            request = acc.ListServiceAccountTokensRequest(
                service_account=service_account,
                show_inactive=show_inactive,
                page_size=page_size,
                page_token=token,
            )
            page = await self._core.call(
                self._core.stubs.access.ListServiceAccountTokens, request, request_id, read=True
            )
            for item in page.tokens:
                yield item
            token = page.next_page_token
            if not token:
                return

    async def revoke_service_account_token(
        self, name: str, *, request_id: str | None = None
    ) -> acc.ServiceAccountToken:
        """`name`: `serviceAccounts/{account}/tokens/{token_id}`."""
        request = acc.RevokeServiceAccountTokenRequest(name=name)
        return await self._core.call(
            self._core.stubs.access.RevokeServiceAccountToken, request, request_id, read=False
        )
