"""The access store: policies, service-account tokens and the lookups access
control makes before a request runs.

Each method is one transaction (SqlBase._tx: error mapping, commit hooks)
around one function of policies_sql, tokens_sql or access_lookups_sql. It
shares the registry's engine and event log: a policy write commits with
its POLICY_SET event, which wakes the watch hub like any other write.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..domain.etags import Etag
from ..domain.names import AliasName, RolloutName, VersionName
from ..domain.permissions import Role
from ..domain.policies import Binding, Policy, PolicyResource
from ..domain.resources import Page
from ..domain.tokens import ServiceAccountToken
from . import access_lookups_sql, policies_sql, tokens_sql
from .transactions import SqlBase


class SqlAccessStore(SqlBase):
    # -- policies -------------------------------------------------------------

    async def get_policies(
        self, resources: Sequence[PolicyResource]
    ) -> dict[PolicyResource, Policy]:
        async with self._tx("get_policies") as conn:
            return await policies_sql.read_policies(conn, resources)

    async def member_grants(self, members: Sequence[str]) -> list[tuple[PolicyResource, Role]]:
        async with self._tx("member_grants") as conn:
            return await policies_sql.member_grants(conn, members)

    async def policy_resources(self) -> frozenset[PolicyResource]:
        async with self._tx("policy_resources") as conn:
            return await policies_sql.policy_resources(conn)

    async def get_policy(self, resource: PolicyResource) -> Policy:
        async with self._tx("get_policy") as conn:
            return await policies_sql.get_policy(conn, resource)

    async def set_policy(
        self, resource: PolicyResource, bindings: tuple[Binding, ...], etag: Etag | None
    ) -> Policy:
        async with self._tx("set_policy", write=True) as conn:
            return await policies_sql.write_policy(conn, resource, bindings, etag)

    # -- service-account tokens -----------------------------------------------

    async def create_token(self, token: ServiceAccountToken) -> ServiceAccountToken:
        async with self._tx("create_token", write=True) as conn:
            return await tokens_sql.insert_token(conn, token)

    async def get_token(self, token_id: str) -> ServiceAccountToken | None:
        async with self._tx("get_token") as conn:
            return await tokens_sql.get_token(conn, token_id)

    async def list_tokens(
        self, account: str, active_at_us: int | None, before_id: int | None, limit: int
    ) -> tuple[Page[ServiceAccountToken], int | None]:
        async with self._tx("list_tokens") as conn:
            return await tokens_sql.list_tokens(conn, account, active_at_us, before_id, limit)

    async def revoke_token(self, account: str, token_id: str) -> ServiceAccountToken:
        async with self._tx("revoke_token", write=True) as conn:
            return await tokens_sql.revoke_token(conn, account, token_id)

    # -- lookups before authorization -----------------------------------------

    async def rollout_alias(self, name: RolloutName) -> AliasName | None:
        async with self._tx("rollout_alias") as conn:
            return await access_lookups_sql.rollout_alias(conn, name)

    async def upload_version(self, upload_id: str) -> tuple[bool, VersionName | None]:
        async with self._tx("upload_version") as conn:
            return await access_lookups_sql.upload_version(conn, upload_id)

    async def blob_models(self, digest: str) -> frozenset[str]:
        async with self._tx("blob_models") as conn:
            return await access_lookups_sql.blob_models(conn, digest)
