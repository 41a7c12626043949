"""Which permission every RPC needs, on which resource: the one table.

The server enforces exactly this table (`api.access`), the README's
permission table is generated from it, and the permission-matrix test
derives every expected outcome from it and the role table in
`domain.permissions`. Health and reflection are the only methods outside
it: they need no principal.

A check names a permission, where the resource comes from (`Target`) and
the request field that holds its name. A MODEL permission checked on an
alias or a version is checked on their model.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..domain.permissions import Permission

P = Permission


class Target(enum.Enum):
    """Where the resource a permission is checked on comes from (the value
    is its description in the README, `{field}` standing for the field)."""

    REGISTRY = "`registry`"
    NAME = "the model, or alias, in `{field}`"
    ROLLOUT = "the alias of the rollout in `{field}` (looked up)"
    UPLOAD = "the model of the upload's version; a blob upload: any model"
    BLOB = "any model with a version that references the digest"
    POLICY = "the `resource`"
    TRUST_POLICY = "the model of the trust policy in `{field}`; the default: `registry`"
    EVENTS = "the model in `filter`; without one, each event is filtered"
    LISTED = "each model listed (the others are left out)"
    CALLER = "nothing: any authenticated caller"


class When(enum.Enum):
    """Checks that apply only to some requests of a method."""

    ALWAYS = "always"
    MODEL_FIELDS = "the update changes display_name, description or labels"
    PROTECTION_FIELDS = "the update changes protected_aliases or separation_of_duties"
    QUOTA_FIELDS = "the update changes storage_quota_bytes"
    OTHER_PRINCIPAL = "the request tests another principal than the caller"


@dataclass(frozen=True)
class Check:
    permission: Permission | None
    target: Target
    # The request field naming the resource; `[]` means every element.
    field: str = ""
    when: When = When.ALWAYS
    # For Target.POLICY: the permission when the resource is `registry`.
    root_permission: Permission | None = None


def _name(permission: Permission, field: str = "name") -> tuple[Check, ...]:
    return (Check(permission, Target.NAME, field),)


REGISTRY = "/modelregistry.v1.RegistryService/"
ARTIFACT = "/modelregistry.v1.ArtifactService/"
ROLLOUT = "/modelregistry.v1.RolloutService/"
EVENT = "/modelregistry.v1.EventService/"
ACCESS = "/modelregistry.v1.AccessService/"
EDGE = "/modelregistry.v1.EdgeService/"
SIGNATURE = "/modelregistry.v1.SignatureService/"
PROTECTION_FIELDS = frozenset({"protected_aliases", "separation_of_duties"})
QUOTA_FIELDS = frozenset({"storage_quota_bytes"})

RULES: dict[str, tuple[Check, ...]] = {
    REGISTRY + "CreateModel": (Check(P.MODELS_CREATE, Target.REGISTRY),),
    REGISTRY + "GetModel": _name(P.MODELS_GET),
    REGISTRY + "ListModels": (Check(P.MODELS_GET, Target.LISTED),),
    REGISTRY + "UpdateModel": (
        Check(P.MODELS_UPDATE, Target.NAME, "model.name", When.MODEL_FIELDS),
        Check(P.MODELS_SET_PROTECTION, Target.NAME, "model.name", When.PROTECTION_FIELDS),
        Check(P.MODELS_SET_QUOTA, Target.NAME, "model.name", When.QUOTA_FIELDS),
    ),
    REGISTRY + "DeleteModel": _name(P.MODELS_DELETE),
    REGISTRY + "CreateModelVersion": _name(P.VERSIONS_CREATE, "parent"),
    REGISTRY + "GetModelVersion": _name(P.VERSIONS_GET),
    REGISTRY + "ListModelVersions": _name(P.VERSIONS_GET, "parent"),
    REGISTRY + "UpdateModelVersion": _name(P.VERSIONS_UPDATE, "model_version.name"),
    REGISTRY + "DeleteModelVersion": _name(P.VERSIONS_DELETE),
    REGISTRY + "SetAlias": _name(P.ALIASES_SET, "alias.name"),
    REGISTRY + "GetAlias": _name(P.ALIASES_GET),
    REGISTRY + "ListAliases": _name(P.ALIASES_GET, "parent"),
    REGISTRY + "DeleteAlias": _name(P.ALIASES_DELETE),
    REGISTRY + "ResolveAlias": _name(P.ALIASES_GET),
    REGISTRY + "BatchSetAliases": _name(P.ALIASES_SET, "requests[].alias.name"),
    REGISTRY + "ApproveModelVersion": _name(P.VERSIONS_REVIEW),
    REGISTRY + "RejectModelVersion": _name(P.VERSIONS_REVIEW),
    ARTIFACT + "Upload": (Check(P.VERSIONS_UPLOAD, Target.UPLOAD, "start"),),
    ARTIFACT + "GetUpload": (Check(P.VERSIONS_UPLOAD, Target.UPLOAD, "upload_id"),),
    ARTIFACT + "CancelUpload": (Check(P.VERSIONS_UPLOAD, Target.UPLOAD, "upload_id"),),
    # Download names exactly one of digest, version or alias.
    ARTIFACT + "Download": (
        Check(P.ARTIFACTS_DOWNLOAD, Target.BLOB, "digest"),
        Check(P.ARTIFACTS_DOWNLOAD, Target.NAME, "version"),
        Check(P.ARTIFACTS_DOWNLOAD, Target.NAME, "alias"),
    ),
    ARTIFACT + "GetBlob": (Check(P.ARTIFACTS_DOWNLOAD, Target.BLOB, "digest"),),
    ARTIFACT + "CollectGarbage": (Check(P.BLOBS_COLLECT_GARBAGE, Target.REGISTRY),),
    ROLLOUT + "StartRollout": _name(P.ROLLOUTS_START, "alias"),
    ROLLOUT + "GetRollout": (Check(P.ROLLOUTS_GET, Target.ROLLOUT, "name"),),
    ROLLOUT + "ListRollouts": _name(P.ROLLOUTS_GET, "parent"),
    ROLLOUT + "AdvanceRollout": (Check(P.ROLLOUTS_UPDATE, Target.ROLLOUT, "name"),),
    ROLLOUT + "PauseRollout": (Check(P.ROLLOUTS_UPDATE, Target.ROLLOUT, "name"),),
    ROLLOUT + "ResumeRollout": (Check(P.ROLLOUTS_UPDATE, Target.ROLLOUT, "name"),),
    ROLLOUT + "RollbackRollout": (Check(P.ROLLOUTS_UPDATE, Target.ROLLOUT, "name"),),
    EVENT + "ListEvents": (Check(P.EVENTS_LIST, Target.EVENTS, "filter"),),
    EVENT + "Watch": (Check(P.EVENTS_LIST, Target.EVENTS, "filter"),),
    ACCESS + "GetIamPolicy": (
        Check(
            P.MODELS_GET_IAM_POLICY,
            Target.POLICY,
            "resource",
            root_permission=P.REGISTRY_GET_IAM_POLICY,
        ),
    ),
    ACCESS + "SetIamPolicy": (
        Check(
            P.MODELS_SET_IAM_POLICY,
            Target.POLICY,
            "resource",
            root_permission=P.REGISTRY_SET_IAM_POLICY,
        ),
    ),
    ACCESS + "TestIamPermissions": (
        Check(
            P.MODELS_GET_IAM_POLICY,
            Target.POLICY,
            "resource",
            When.OTHER_PRINCIPAL,
            P.REGISTRY_GET_IAM_POLICY,
        ),
    ),
    ACCESS + "CreateServiceAccountToken": (
        Check(P.SERVICE_ACCOUNTS_CREATE_TOKEN, Target.REGISTRY),
    ),
    ACCESS + "ListServiceAccountTokens": (Check(P.SERVICE_ACCOUNTS_LIST_TOKENS, Target.REGISTRY),),
    ACCESS + "RevokeServiceAccountToken": (
        Check(P.SERVICE_ACCOUNTS_REVOKE_TOKEN, Target.REGISTRY),
    ),
    EDGE + "ReportWarmState": (Check(P.EDGES_REPORT, Target.REGISTRY),),
    SIGNATURE + "AttachSignature": _name(P.VERSIONS_UPLOAD, "parent"),
    SIGNATURE + "ListSignatures": _name(P.VERSIONS_GET, "parent"),
    SIGNATURE + "GetTrustPolicy": (Check(P.MODELS_GET, Target.TRUST_POLICY, "name"),),
    SIGNATURE + "UpdateTrustPolicy": (
        Check(
            P.MODELS_SET_PROTECTION,
            Target.TRUST_POLICY,
            "policy.name",
            root_permission=P.REGISTRY_SET_IAM_POLICY,
        ),
    ),
}

# Methods anyone may call, with or without credentials.
OPEN_PREFIXES = ("/grpc.health.", "/grpc.reflection.")


def short_method(method: str) -> str:
    """`/modelregistry.v1.RegistryService/GetModel` -> `RegistryService.GetModel`."""
    service, _, name = method.rpartition("/")
    return f"{service.rsplit('.', 1)[-1]}.{name}"
