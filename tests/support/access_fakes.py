"""In-memory stand-ins for the policy store and the access lookups, for
tests of the access table without a database."""

from __future__ import annotations

from collections.abc import Sequence

from modelregistry_server.domain.names import AliasName, RolloutName, VersionName
from modelregistry_server.domain.permissions import Role
from modelregistry_server.domain.policies import Binding, Policy, PolicyResource


class FakePolicies:
    def __init__(self) -> None:
        self.policies: dict[PolicyResource, Policy] = {}
        self.reads = 0

    def bind(self, resource: PolicyResource, role: Role, member: str) -> None:
        old = self.policies.get(resource, Policy(resource))
        self.policies[resource] = Policy(resource, (*old.bindings, Binding(role, (member,))))

    async def get_policies(
        self, resources: Sequence[PolicyResource]
    ) -> dict[PolicyResource, Policy]:
        self.reads += 1
        return {r: self.policies[r] for r in resources if r in self.policies}

    async def policy_resources(self) -> frozenset[PolicyResource]:
        return frozenset(self.policies)

    async def member_grants(self, members: Sequence[str]) -> list[tuple[PolicyResource, Role]]:
        return [
            (r, b.role)
            for r, p in self.policies.items()
            for b in p.bindings
            if set(b.members) & set(members)
        ]


class FakeLookups:
    async def rollout_alias(self, name: RolloutName) -> AliasName | None:
        return AliasName(name.model, "production") if name.rollout == "0" * 12 else None

    async def upload_version(self, upload_id: str) -> tuple[bool, VersionName | None]:
        if upload_id == "a" * 32:
            return True, VersionName("fraud", 1)
        return upload_id == "b" * 32, None

    async def blob_models(self, digest: str) -> frozenset[str]:
        return frozenset({"fraud"})
