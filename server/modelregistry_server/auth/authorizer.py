"""Decisions: may this principal use this permission on this resource?

Policies are read through a narrow interface and cached per resource;
decisions are cached per (principal, permission, resource). Both caches
are dropped whenever a policy changes, here or on another replica (the
change is an event in the log every replica follows), and expire after
`ttl_s` as a safety net. A read of a cached decision costs a dict lookup.

Every denial goes to the audit log (`modelreg.audit`) with the principal,
method, resource, permission and request id.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Protocol

from ..domain.access_errors import permission_denied
from ..domain.permissions import Level, Permission, Role, granted_at
from ..domain.policies import (
    REGISTRY,
    Decision,
    Policy,
    PolicyResource,
    check_level,
    decide,
)
from ..domain.principals import Principal, member_keys

audit = logging.getLogger("modelreg.audit")


class PolicyReader(Protocol):
    async def get_policies(
        self, resources: Sequence[PolicyResource]
    ) -> dict[PolicyResource, Policy]:
        """The policies that exist among `resources`."""

    async def member_grants(self, members: Sequence[str]) -> list[tuple[PolicyResource, Role]]:
        """Every (resource, role) bound to one of `members`."""

    async def policy_resources(self) -> frozenset[PolicyResource]:
        """The resources that have a policy at all."""


def audit_denial(decision: Decision, method: str, request_id: str) -> None:
    audit.warning(
        "permission denied",
        extra={
            "principal": decision.principal,
            "method": method,
            "resource": str(decision.resource),
            "permission": decision.permission.value,
            "request_id": request_id,
            "decision": "DENIED",
        },
    )


class Authorizer:
    def __init__(
        self,
        reader: PolicyReader,
        admins: frozenset[str] = frozenset(),
        *,
        ttl_s: float = 300.0,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reader = reader
        self.admins = admins
        self._ttl_s = ttl_s
        self._max = max_entries
        self._clock = clock
        self._generation = 0
        self._expires = clock() + ttl_s
        self._policies: dict[PolicyResource, Policy] = {}
        # Resources with a policy; the others need no read (most models,
        # when roles are granted on the registry). None: not loaded yet.
        self._with_policy: frozenset[PolicyResource] | None = None
        self._decisions: OrderedDict[tuple[str, Permission, PolicyResource], Decision] = (
            OrderedDict()
        )
        self._grants: dict[str, frozenset[tuple[PolicyResource, Role]]] = {}

    @property
    def generation(self) -> int:
        """Bumped by every policy change: a holder of derived answers
        (a watch stream's visible models) recomputes when it moves."""
        self._expire()
        return self._generation

    def invalidate(self) -> None:
        self._generation += 1
        self._policies.clear()
        self._with_policy = None
        self._decisions.clear()
        self._grants.clear()
        self._expires = self._clock() + self._ttl_s

    def _expire(self) -> None:
        if self._clock() >= self._expires:
            self.invalidate()

    async def _chain_policies(self, resource: PolicyResource) -> dict[PolicyResource, Policy]:
        chain = resource.chain()
        if all(r in self._policies for r in chain):
            return {r: self._policies[r] for r in chain}
        generation = self._generation
        with_policy = self._with_policy
        if with_policy is None:
            with_policy = await self._reader.policy_resources()
            if generation == self._generation:
                self._with_policy = with_policy
        wanted = [r for r in chain if r in with_policy]
        found = await self._reader.get_policies(wanted) if wanted else {}
        policies = {r: found.get(r, Policy(r)) for r in chain}
        if generation == self._generation:  # no change raced the read: keep it
            self._policies.update(policies)
        return policies

    async def decide(
        self, principal: Principal, permission: Permission, resource: PolicyResource
    ) -> Decision:
        """The decision for a request that names `resource` (a MODEL
        permission on an alias is decided on its model)."""
        self._expire()
        where = check_level(permission, resource)
        key = (str(principal), permission, where)
        found = self._decisions.get(key)
        if found is not None:
            return found
        generation = self._generation
        # Bootstrap admins need no policy read (decide() grants them first).
        policies = {} if key[0] in self.admins else await self._chain_policies(where)
        decision = decide(principal, permission, where, policies, self.admins)
        if generation == self._generation:
            self._decisions[key] = decision
            if len(self._decisions) > self._max:
                self._decisions.popitem(last=False)
        return decision

    async def require(
        self,
        principal: Principal,
        permission: Permission,
        resource: PolicyResource,
        method: str,
        request_id: str,
    ) -> Decision:
        decision = await self.decide(principal, permission, resource)
        if not decision.allowed:
            audit_denial(decision, method, request_id)
            raise permission_denied(decision)
        return decision

    async def _member_grants(self, principal: Principal) -> frozenset[tuple[PolicyResource, Role]]:
        who = str(principal)
        found = self._grants.get(who)
        if found is None:
            generation = self._generation
            found = frozenset(await self._reader.member_grants(member_keys(principal)))
            if generation == self._generation:
                self._grants[who] = found
        return found

    async def models_where(self, principal: Principal, permission: Permission) -> frozenset[str]:
        """Models on whose own policy (or an alias's, for an ALIAS
        permission) a binding grants `permission` to the principal. Bindings
        on the registry are not included: see `visible_models`."""
        out: set[str] = set()
        for resource, role in await self._member_grants(principal):
            if resource.model and permission in granted_at(role, resource.level):
                out.add(resource.model)
        return frozenset(out)

    async def visible_models(
        self, principal: Principal, permission: Permission
    ) -> frozenset[str] | None:
        """None if `permission` holds on every model (granted on the
        registry), else the models it holds on at model level."""
        self._expire()
        root = await self.decide(principal, permission, REGISTRY)
        if root.allowed:
            return None
        out: set[str] = set()
        for resource, role in await self._member_grants(principal):
            if resource.level == Level.MODEL and permission in granted_at(role, Level.MODEL):
                out.add(resource.model)
        return frozenset(out)

    async def holds_anywhere(self, principal: Principal, permission: Permission) -> Decision:
        """Granted on the registry or on some model: what a blob upload needs,
        before it is tied to any version."""
        root = await self.decide(principal, permission, REGISTRY)
        if root.allowed:
            return root
        for model in sorted(await self.models_where(principal, permission)):
            decision = await self.decide(principal, permission, PolicyResource(model))
            if decision.allowed:
                return decision
        return root
