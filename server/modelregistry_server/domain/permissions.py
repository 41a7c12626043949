"""Who may do what: the one table of permissions and roles.

A permission names one kind of action (`aliases.set`). Each has a level:
the most specific kind of resource it is checked on. A ROOT permission is
checked on `registry` only (creating models, issuing tokens); a MODEL one on
`models/{model}` (reading versions, approving); an ALIAS one on
`models/{model}/aliases/{alias}` (moving that alias). A binding grants its
role's permissions on its resource and everything below it, so a deployer
bound on `models/fraud/aliases/staging` moves `staging` but not
`production`, and a viewer bound on `registry` reads every model.

Roles are fixed sets of permissions. The server, the docs and the
permission-matrix test all read these tables; nothing else decides what a
role may do.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Level(enum.IntEnum):
    """How deep in the resource tree a permission is checked."""

    ROOT = 0
    MODEL = 1
    ALIAS = 2


class Permission(enum.StrEnum):
    # Root: the registry as a whole.
    MODELS_CREATE = "models.create"
    REGISTRY_GET_IAM_POLICY = "registry.getIamPolicy"
    REGISTRY_SET_IAM_POLICY = "registry.setIamPolicy"
    SERVICE_ACCOUNTS_CREATE_TOKEN = "serviceAccounts.createToken"
    SERVICE_ACCOUNTS_LIST_TOKENS = "serviceAccounts.listTokens"
    SERVICE_ACCOUNTS_REVOKE_TOKEN = "serviceAccounts.revokeToken"
    BLOBS_COLLECT_GARBAGE = "blobs.collectGarbage"
    EDGES_REPORT = "edges.report"
    # A model and its versions.
    MODELS_GET = "models.get"
    MODELS_UPDATE = "models.update"
    MODELS_SET_PROTECTION = "models.setProtection"
    MODELS_SET_QUOTA = "models.setQuota"
    MODELS_DELETE = "models.delete"
    VERSIONS_GET = "versions.get"
    VERSIONS_CREATE = "versions.create"
    VERSIONS_UPDATE = "versions.update"
    VERSIONS_UPLOAD = "versions.upload"
    VERSIONS_REVIEW = "versions.review"
    VERSIONS_DELETE = "versions.delete"
    # One alias (also granted by bindings on its model and on the registry).
    EVENTS_LIST = "events.list"
    ALIASES_GET = "aliases.get"
    ALIASES_SET = "aliases.set"
    ALIASES_DELETE = "aliases.delete"
    ROLLOUTS_GET = "rollouts.get"
    ROLLOUTS_START = "rollouts.start"
    ROLLOUTS_UPDATE = "rollouts.update"
    ARTIFACTS_DOWNLOAD = "artifacts.download"
    MODELS_GET_IAM_POLICY = "models.getIamPolicy"
    MODELS_SET_IAM_POLICY = "models.setIamPolicy"


@dataclass(frozen=True)
class PermissionInfo:
    level: Level
    description: str


P = Permission
PERMISSIONS: dict[Permission, PermissionInfo] = {
    P.MODELS_CREATE: PermissionInfo(Level.ROOT, "create models"),
    P.REGISTRY_GET_IAM_POLICY: PermissionInfo(Level.ROOT, "read the registry's policy"),
    P.REGISTRY_SET_IAM_POLICY: PermissionInfo(Level.ROOT, "change the registry's policy"),
    P.SERVICE_ACCOUNTS_CREATE_TOKEN: PermissionInfo(Level.ROOT, "issue service-account tokens"),
    P.SERVICE_ACCOUNTS_LIST_TOKENS: PermissionInfo(Level.ROOT, "list service-account tokens"),
    P.SERVICE_ACCOUNTS_REVOKE_TOKEN: PermissionInfo(Level.ROOT, "revoke service-account tokens"),
    P.BLOBS_COLLECT_GARBAGE: PermissionInfo(Level.ROOT, "delete unreferenced blobs (gc)"),
    P.EDGES_REPORT: PermissionInfo(Level.ROOT, "report a regional edge's warm artifacts"),
    P.MODELS_GET: PermissionInfo(Level.MODEL, "read a model; see it in ListModels"),
    P.MODELS_UPDATE: PermissionInfo(Level.MODEL, "change display name, description, labels"),
    P.MODELS_SET_PROTECTION: PermissionInfo(
        Level.MODEL, "change protected aliases and separation of duties"
    ),
    P.MODELS_SET_QUOTA: PermissionInfo(Level.MODEL, "change a model's storage quota"),
    P.MODELS_DELETE: PermissionInfo(Level.MODEL, "delete a model"),
    P.VERSIONS_GET: PermissionInfo(Level.MODEL, "read and list versions"),
    P.VERSIONS_CREATE: PermissionInfo(Level.MODEL, "create versions"),
    P.VERSIONS_UPDATE: PermissionInfo(Level.MODEL, "update, archive and restore versions"),
    P.VERSIONS_UPLOAD: PermissionInfo(Level.MODEL, "upload artifacts"),
    P.VERSIONS_REVIEW: PermissionInfo(Level.MODEL, "approve and reject versions"),
    P.VERSIONS_DELETE: PermissionInfo(Level.MODEL, "delete versions"),
    P.EVENTS_LIST: PermissionInfo(
        Level.ALIAS, "list and watch events (an alias's own, bound on the alias)"
    ),
    P.ALIASES_GET: PermissionInfo(Level.ALIAS, "read, list and resolve aliases"),
    P.ALIASES_SET: PermissionInfo(Level.ALIAS, "create and move an alias"),
    P.ALIASES_DELETE: PermissionInfo(Level.ALIAS, "delete an alias"),
    P.ROLLOUTS_GET: PermissionInfo(Level.ALIAS, "read and list rollouts"),
    P.ROLLOUTS_START: PermissionInfo(Level.ALIAS, "start a rollout of an alias"),
    P.ROLLOUTS_UPDATE: PermissionInfo(Level.ALIAS, "advance, pause, resume, roll back"),
    P.ARTIFACTS_DOWNLOAD: PermissionInfo(Level.ALIAS, "download artifacts"),
    P.MODELS_GET_IAM_POLICY: PermissionInfo(Level.ALIAS, "read a model's or alias's policy"),
    P.MODELS_SET_IAM_POLICY: PermissionInfo(Level.ALIAS, "change a model's or alias's policy"),
}


class Role(enum.StrEnum):
    VIEWER = "roles/viewer"
    PUBLISHER = "roles/publisher"
    APPROVER = "roles/approver"
    DEPLOYER = "roles/deployer"
    OWNER = "roles/owner"
    ADMIN = "roles/admin"
    EDGE = "roles/edge"


@dataclass(frozen=True)
class RoleInfo:
    description: str
    permissions: frozenset[Permission]
    # The shallowest resource it may be bound on is always the registry; the
    # deepest is where it still grants something (admin: the registry only).
    deepest: Level


_VIEW = frozenset(
    {
        P.MODELS_GET,
        P.VERSIONS_GET,
        P.ALIASES_GET,
        P.ROLLOUTS_GET,
        P.EVENTS_LIST,
        P.ARTIFACTS_DOWNLOAD,
    }
)
_BELOW_ROOT = frozenset(p for p, info in PERMISSIONS.items() if info.level > Level.ROOT)

ROLES: dict[Role, RoleInfo] = {
    Role.VIEWER: RoleInfo(
        "read metadata, resolve aliases, watch events, download artifacts", _VIEW, Level.ALIAS
    ),
    Role.PUBLISHER: RoleInfo(
        "viewer, and create and update versions and upload their artifacts",
        _VIEW | {P.VERSIONS_CREATE, P.VERSIONS_UPDATE, P.VERSIONS_UPLOAD},
        Level.MODEL,
    ),
    Role.APPROVER: RoleInfo(
        "viewer, and approve or reject versions", _VIEW | {P.VERSIONS_REVIEW}, Level.MODEL
    ),
    Role.DEPLOYER: RoleInfo(
        "viewer, and set and delete aliases and run their rollouts",
        _VIEW | {P.ALIASES_SET, P.ALIASES_DELETE, P.ROLLOUTS_START, P.ROLLOUTS_UPDATE},
        Level.ALIAS,
    ),
    Role.OWNER: RoleInfo(
        "everything on the model: its protection, its policy, deleting it",
        _BELOW_ROOT,
        Level.ALIAS,
    ),
    Role.ADMIN: RoleInfo(
        "everything: create models, issue tokens, every model, the registry's policy",
        frozenset(PERMISSIONS),
        Level.ROOT,
    ),
    Role.EDGE: RoleInfo(
        "a regional edge's identity: viewer, and report its warm artifacts (bind it on "
        "the registry)",
        _VIEW | {P.EDGES_REPORT},
        Level.ALIAS,
    ),
}


def level_of(permission: Permission) -> Level:
    return PERMISSIONS[permission].level


def roles_granting(permission: Permission) -> tuple[Role, ...]:
    """The roles that hold `permission`, least powerful first (for messages)."""
    return tuple(role for role, info in ROLES.items() if permission in info.permissions)


def bindable(role: Role, level: Level) -> bool:
    """Whether binding `role` on a resource of this level grants anything."""
    return level <= ROLES[role].deepest


def granted_at(role: Role, level: Level) -> frozenset[Permission]:
    """What a binding of `role` on a resource of `level` grants there and below."""
    return frozenset(p for p in ROLES[role].permissions if level_of(p) >= level)
