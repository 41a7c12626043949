"""The role table and policy evaluation: inheritance, levels, explanations."""

from __future__ import annotations

import pytest
from modelregistry_server.domain.errors import InvalidArgument
from modelregistry_server.domain.permissions import (
    PERMISSIONS,
    ROLES,
    Level,
    Permission,
    Role,
    granted_at,
    roles_granting,
)
from modelregistry_server.domain.policies import (
    REGISTRY,
    Binding,
    Policy,
    PolicyResource,
    check_bindings,
    check_level,
    decide,
    parse_policy_resource,
)
from modelregistry_server.domain.principals import (
    ALL_AUTHENTICATED,
    parse_principal,
    service_account,
    user,
)

P = Permission
FRAUD = PolicyResource("fraud")
PRODUCTION = PolicyResource("fraud", "production")
STAGING = PolicyResource("fraud", "staging")
ALICE = user("alice")


def policies(*entries: tuple[PolicyResource, Role, str]) -> dict[PolicyResource, Policy]:
    out: dict[PolicyResource, Policy] = {}
    for resource, role, member in entries:
        old = out.get(resource, Policy(resource))
        out[resource] = Policy(resource, (*old.bindings, Binding(role, (member,))))
    return out


def test_roles_nest_as_documented() -> None:
    viewer = ROLES[Role.VIEWER].permissions
    for role in Role:
        assert viewer <= ROLES[role].permissions, role
    assert ROLES[Role.ADMIN].permissions == frozenset(PERMISSIONS)
    root_only = {p for p, info in PERMISSIONS.items() if info.level == Level.ROOT}
    assert not root_only & ROLES[Role.OWNER].permissions
    assert P.VERSIONS_REVIEW not in ROLES[Role.PUBLISHER].permissions
    assert P.ALIASES_SET not in ROLES[Role.APPROVER].permissions
    assert P.MODELS_SET_PROTECTION in ROLES[Role.OWNER].permissions
    assert roles_granting(P.ALIASES_SET) == (Role.DEPLOYER, Role.OWNER, Role.ADMIN)


def test_bindings_inherit_downward_only() -> None:
    on_model = policies((FRAUD, Role.DEPLOYER, "user:alice"))
    assert decide(ALICE, P.ALIASES_SET, PRODUCTION, on_model).allowed
    assert not decide(ALICE, P.ALIASES_SET, PolicyResource("other", "production"), on_model).allowed
    on_alias = policies((STAGING, Role.DEPLOYER, "user:alice"))
    assert decide(ALICE, P.ALIASES_SET, STAGING, on_alias).allowed
    assert not decide(ALICE, P.ALIASES_SET, PRODUCTION, on_alias).allowed
    # An alias binding grants nothing on the model itself.
    assert not decide(ALICE, P.VERSIONS_GET, FRAUD, on_alias).allowed
    on_root = policies((REGISTRY, Role.VIEWER, "user:alice"))
    assert decide(ALICE, P.VERSIONS_GET, PolicyResource("anything"), on_root).allowed


def test_owner_on_the_registry_cannot_do_root_things() -> None:
    on_root = policies((REGISTRY, Role.OWNER, "user:alice"))
    assert decide(ALICE, P.MODELS_DELETE, FRAUD, on_root).allowed
    assert not decide(ALICE, P.MODELS_CREATE, REGISTRY, on_root).allowed
    assert not decide(ALICE, P.REGISTRY_SET_IAM_POLICY, REGISTRY, on_root).allowed


def test_members_match_exactly_or_all_authenticated() -> None:
    ps = policies((FRAUD, Role.VIEWER, ALL_AUTHENTICATED))
    assert decide(service_account("ci"), P.MODELS_GET, FRAUD, ps).allowed
    ps = policies((FRAUD, Role.VIEWER, "user:alice"))
    assert not decide(user("alice2"), P.MODELS_GET, FRAUD, ps).allowed
    assert not decide(service_account("alice"), P.MODELS_GET, FRAUD, ps).allowed


def test_bootstrap_admins_hold_everything() -> None:
    d = decide(ALICE, P.MODELS_CREATE, REGISTRY, {}, frozenset({"user:alice"}))
    assert d.allowed
    assert "--bootstrap-admin" in d.explain()


def test_decisions_explain_themselves() -> None:
    ps = policies((FRAUD, Role.DEPLOYER, "user:alice"))
    granted = decide(ALICE, P.ALIASES_SET, PRODUCTION, ps)
    assert granted.explain() == (
        "aliases.set on models/fraud/aliases/production granted by roles/deployer "
        "on models/fraud to user:alice"
    )
    denied = decide(user("bob"), P.ALIASES_SET, PRODUCTION, ps)
    text = denied.explain()
    assert "user:bob lacks aliases.set on models/fraud/aliases/production" in text
    assert "roles/deployer, roles/owner, roles/admin" in text
    assert "models/fraud/aliases/production or models/fraud or registry" in text


def test_model_permissions_are_checked_on_the_model() -> None:
    assert check_level(P.VERSIONS_GET, PRODUCTION) == FRAUD
    assert check_level(P.ALIASES_SET, PRODUCTION) == PRODUCTION
    assert check_level(P.MODELS_CREATE, FRAUD) == REGISTRY
    assert check_level(P.ALIASES_GET, FRAUD) == FRAUD


def test_granted_at_respects_levels() -> None:
    assert granted_at(Role.DEPLOYER, Level.ALIAS) >= {P.ALIASES_SET, P.ROLLOUTS_START}
    assert P.VERSIONS_GET not in granted_at(Role.DEPLOYER, Level.ALIAS)
    assert P.MODELS_CREATE not in granted_at(Role.ADMIN, Level.MODEL)


def test_policy_resources_parse() -> None:
    assert parse_policy_resource("registry") == REGISTRY
    assert parse_policy_resource("models/fraud") == FRAUD
    assert parse_policy_resource("models/fraud/aliases/production") == PRODUCTION
    for bad in ("", "models", "models/Fraud", "models/fraud/versions/1", "registry/x"):
        with pytest.raises(InvalidArgument):
            parse_policy_resource(bad)


def test_written_policies_are_validated() -> None:
    checked = check_bindings(
        FRAUD, [("roles/viewer", ["user:b", "user:a", "user:a"]), ("roles/owner", [])]
    )
    assert checked == (Binding(Role.VIEWER, ("user:a", "user:b")),)
    bad_cases = [
        (FRAUD, [("roles/superuser", ["user:a"])]),
        (FRAUD, [("roles/viewer", ["user:a"]), ("roles/viewer", ["user:b"])]),
        (FRAUD, [("roles/admin", ["user:a"])]),
        (PRODUCTION, [("roles/approver", ["user:a"])]),
        (FRAUD, [("roles/viewer", ["alice"])]),
        (FRAUD, [("roles/viewer", ["user:has space"])]),
        (FRAUD, [("roles/viewer", ["serviceAccount:Bad_Name"])]),
        (FRAUD, [("roles/viewer", [f"user:u{i}" for i in range(1001)])]),
    ]
    for resource, bindings in bad_cases:
        with pytest.raises(InvalidArgument) as exc:
            check_bindings(resource, bindings)
        assert exc.value.reason in ("INVALID_POLICY", "INVALID_PRINCIPAL")
    assert check_bindings(REGISTRY, [("roles/admin", ["user:root"])])
    assert check_bindings(PRODUCTION, [("roles/deployer", ["serviceAccount:ci"])])


def test_principals_parse() -> None:
    assert parse_principal("user:alice@example.com") == user("alice@example.com")
    assert parse_principal("serviceAccount:ci-bot") == service_account("ci-bot")
    for bad in ("alice", "user:", "group:x", "serviceAccount:CI", "user:" + "x" * 300):
        with pytest.raises(InvalidArgument):
            parse_principal(bad)
