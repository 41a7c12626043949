"""IAM policies: who holds which role on which resource, and what follows.

A policy sits on `registry`, `models/{model}` or
`models/{model}/aliases/{alias}` and lists bindings (a role and its
members). A permission is checked on one resource; the bindings of that
resource and of its ancestors count, each granting the permissions its role
holds at or below the level it is bound on. Every decision says why: the
binding that granted it, or the roles that would have.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from modelregistry.v1.error_reasons import ErrorReason

from .errors import InvalidArgument
from .names import AliasName, ModelName, parse_alias_name, parse_model_name
from .permissions import (
    Level,
    Permission,
    Role,
    bindable,
    granted_at,
    level_of,
    roles_granting,
)
from .principals import Principal, check_member, member_keys

ROOT = "registry"
# Limits of one policy: a binding per role at most, so at most one per role.
MAX_MEMBERS_PER_BINDING = 1000
MAX_MEMBERS = 1500
BOOTSTRAP = "--bootstrap-admin"


@dataclass(frozen=True, order=True)
class PolicyResource:
    """Where a policy sits: the registry, a model or an alias."""

    model: str = ""
    alias: str = ""

    @property
    def level(self) -> Level:
        if not self.model:
            return Level.ROOT
        return Level.ALIAS if self.alias else Level.MODEL

    def __str__(self) -> str:
        if not self.model:
            return ROOT
        if not self.alias:
            return str(ModelName(self.model))
        return str(AliasName(self.model, self.alias))

    def chain(self) -> tuple[PolicyResource, ...]:
        """This resource and its ancestors, root first."""
        if not self.model:
            return (self,)
        if not self.alias:
            return (REGISTRY, self)
        return (REGISTRY, PolicyResource(self.model), self)

    def at(self, level: Level) -> PolicyResource:
        """The ancestor (or self) at `level`: where a permission of that level
        is checked when the request names this resource."""
        if level == Level.ROOT:
            return REGISTRY
        if level == Level.MODEL:
            return PolicyResource(self.model)
        return self


REGISTRY = PolicyResource()


def parse_policy_resource(value: str, field: str = "resource") -> PolicyResource:
    if value == ROOT:
        return REGISTRY
    if value.count("/") == 1:
        return PolicyResource(parse_model_name(value, field).model)
    name = parse_alias_name(value, field)
    return PolicyResource(name.model, name.alias)


@dataclass(frozen=True)
class Binding:
    role: Role
    members: tuple[str, ...]


@dataclass(frozen=True)
class Policy:
    resource: PolicyResource
    bindings: tuple[Binding, ...] = ()
    # Empty: the resource has never had a policy written.
    etag: str = ""

    def roles_of(self, keys: Iterable[str]) -> tuple[tuple[Role, str], ...]:
        """(role, member) for each binding naming one of `keys`."""
        wanted = set(keys)
        return tuple((b.role, m) for b in self.bindings for m in b.members if m in wanted)


def check_bindings(
    resource: PolicyResource, bindings: Iterable[tuple[str, Iterable[str]]]
) -> tuple[Binding, ...]:
    """Validate a policy being written: known roles, each once, bindable at
    the resource's level, well-formed members, within the limits. Members
    are deduplicated and sorted; empty bindings are dropped."""
    out: list[Binding] = []
    seen: set[Role] = set()
    total = 0
    for i, (role_text, members) in enumerate(bindings):
        field = f"policy.bindings[{i}]"
        try:
            role = Role(role_text)
        except ValueError:
            known = ", ".join(r.value for r in Role)
            raise InvalidArgument(
                ErrorReason.INVALID_POLICY,
                f"{field}.role: unknown role; known: {known}",
                f"{field}.role",
            ) from None
        if role in seen:
            raise InvalidArgument(
                ErrorReason.INVALID_POLICY, f"{field}.role: {role} appears twice", f"{field}.role"
            )
        seen.add(role)
        if not bindable(role, resource.level):
            raise InvalidArgument(
                ErrorReason.INVALID_POLICY,
                f"{field}.role: {role} grants nothing on {resource.level.name.lower()} "
                f"resources such as {resource}; bind it on the model or the registry",
                f"{field}.role",
            )
        checked = sorted({check_member(m, f"{field}.members") for m in members})
        if len(checked) > MAX_MEMBERS_PER_BINDING:
            raise InvalidArgument(
                ErrorReason.INVALID_POLICY,
                f"{field}.members: at most {MAX_MEMBERS_PER_BINDING}",
                f"{field}.members",
            )
        total += len(checked)
        if checked:
            out.append(Binding(role, tuple(checked)))
    if total > MAX_MEMBERS:
        raise InvalidArgument(
            ErrorReason.INVALID_POLICY,
            f"policy: at most {MAX_MEMBERS} members in all",
            "policy.bindings",
        )
    return tuple(sorted(out, key=lambda b: b.role.value))


@dataclass(frozen=True)
class Grant:
    """The binding that let a request through."""

    resource: PolicyResource
    role: Role
    member: str


@dataclass(frozen=True)
class Decision:
    principal: str
    permission: Permission
    resource: PolicyResource
    grant: Grant | None

    @property
    def allowed(self) -> bool:
        return self.grant is not None

    def explain(self) -> str:
        if self.grant is not None:
            g = self.grant
            via = g.member if g.member != BOOTSTRAP else f"{self.principal} ({BOOTSTRAP})"
            return (
                f"{self.permission} on {self.resource} granted by {g.role} on {g.resource} to {via}"
            )
        roles = ", ".join(r.value for r in roles_granting(self.permission))
        where = " or ".join(str(r) for r in reversed(self.resource.chain()))
        return (
            f"{self.principal} lacks {self.permission} on {self.resource}: "
            f"no binding grants it; any of {roles} on {where} would"
        )


def decide(
    principal: Principal,
    permission: Permission,
    resource: PolicyResource,
    policies: Mapping[PolicyResource, Policy],
    admins: frozenset[str] = frozenset(),
) -> Decision:
    """Evaluate one permission on one resource. `policies` holds the policies
    of the resource's chain (missing ones are empty); `admins` are the
    principals configured as bootstrap admins."""
    who = str(principal)
    if who in admins:
        return Decision(who, permission, resource, Grant(REGISTRY, Role.ADMIN, BOOTSTRAP))
    keys = member_keys(principal)
    for node in resource.chain():  # root first: the broadest grant explains best
        policy = policies.get(node)
        if policy is None:
            continue
        for role, member in policy.roles_of(keys):
            if permission in granted_at(role, node.level):
                return Decision(who, permission, resource, Grant(node, role, member))
    return Decision(who, permission, resource, None)


def check_level(permission: Permission, resource: PolicyResource) -> PolicyResource:
    """Where to evaluate `permission` for a request naming `resource`: a
    MODEL permission on an alias is checked on its model."""
    return resource.at(min(level_of(permission), resource.level))
