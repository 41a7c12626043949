"""Enforces the access table (`access_rules.RULES`) on each request.

Runs in the interceptor, before the servicer sees the request: the
services stay free of access checks, apart from the lists and streams
that show each caller only what it may see (they get a `Visibility`).
Names are parsed with the same parsers the servicers use, so a malformed
name is INVALID_ARGUMENT here as it would be there; nothing is read from
storage before the caller holds the permission, except the few lookups
that find which alias a rollout moves or which version an upload fills.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..auth.authorizer import Authorizer, audit_denial
from ..domain.access_errors import permission_denied
from ..domain.digests import check_digest
from ..domain.names import (
    AliasName,
    RolloutName,
    VersionName,
    parse_alias_name,
    parse_model_name,
    parse_rollout_name,
    parse_version_name,
)
from ..domain.permissions import Permission
from ..domain.policies import REGISTRY, Decision, PolicyResource, parse_policy_resource
from ..domain.principals import Principal
from ..domain.trust import parse_policy_name
from .access_rules import PROTECTION_FIELDS, QUOTA_FIELDS, RULES, Check, Target, When


class AccessLookups(Protocol):
    async def rollout_alias(self, name: RolloutName) -> AliasName | None:
        """The alias a rollout moves; None if there is no such rollout."""

    async def upload_version(self, upload_id: str) -> tuple[bool, VersionName | None]:
        """(whether the upload exists, the version it fills if any)."""

    async def blob_models(self, digest: str) -> frozenset[str]:
        """Models with a version whose artifact is, or whose manifest lists, `digest`."""


class Visibility:
    """The models a caller may see in a list or a stream, recomputed when
    any policy changes (a long watch loses a model the moment its viewer
    binding goes)."""

    def __init__(self, authorizer: Authorizer, principal: Principal, permission: Permission):
        self._authorizer = authorizer
        self._principal = principal
        self._permission = permission
        self._generation = -1
        self._models: frozenset[str] | None = frozenset()

    async def models(self) -> frozenset[str] | None:
        """None: every model (and the registry's own events); else these."""
        generation = self._authorizer.generation
        if generation != self._generation:
            self._models = await self._authorizer.visible_models(self._principal, self._permission)
            self._generation = generation
        return self._models


def field_values(request: Any, path: str) -> list[Any]:
    """Values at a dotted path; `x[]` walks every element of a repeated field."""
    values = [request]
    for part in path.split("."):
        repeated = part.endswith("[]")
        attr = part.removesuffix("[]")
        step: list[Any] = []
        for value in values:
            got = getattr(value, attr)
            step.extend(got if repeated else [got])
        values = step
    return values


def name_resource(value: str, field: str) -> PolicyResource:
    """The policy resource a model, version, alias or rollout name belongs to."""
    parts = value.split("/")
    if len(parts) == 4 and parts[2] == "versions":
        return PolicyResource(parse_version_name(value, field).model)
    if len(parts) == 4 and parts[2] == "aliases":
        alias = parse_alias_name(value, field)
        return PolicyResource(alias.model, alias.alias)
    if len(parts) == 4 and parts[2] == "rollouts":
        return PolicyResource(parse_rollout_name(value, field).model)
    return PolicyResource(parse_model_name(value, field).model)


def _changed_model_fields(request: Any) -> set[str]:
    """What an UpdateModel request changes, by the service's mask rules:
    the mask's paths, `*` for all, or the fields it sets when empty."""
    paths = set(request.update_mask.paths)
    if "*" in paths:
        return {"display_name", *PROTECTION_FIELDS, *QUOTA_FIELDS}
    if paths:
        return paths
    m = request.model
    populated = {
        "display_name": bool(m.display_name),
        "description": bool(m.description),
        "labels": bool(m.labels),
        "protected_aliases": bool(m.protected_aliases),
        "separation_of_duties": m.separation_of_duties,
        "storage_quota_bytes": bool(m.storage_quota_bytes),
    }
    return {path for path, set_ in populated.items() if set_}


def _applies(check: Check, request: Any, principal: Principal) -> bool:
    if check.when == When.ALWAYS:
        return True
    if check.when == When.OTHER_PRINCIPAL:
        return bool(request.principal) and request.principal != str(principal)
    changed = _changed_model_fields(request)
    if check.when == When.PROTECTION_FIELDS:
        return bool(changed & PROTECTION_FIELDS)
    if check.when == When.QUOTA_FIELDS:
        return bool(changed & QUOTA_FIELDS)
    return not changed or bool(changed - PROTECTION_FIELDS - QUOTA_FIELDS)


class AccessControl:
    def __init__(self, authorizer: Authorizer, lookups: AccessLookups) -> None:
        self.authorizer = authorizer
        self._lookups = lookups

    async def authorize(
        self, method: str, request: Any, principal: Principal, request_id: str
    ) -> Visibility | None:
        """Raise PERMISSION_DENIED unless every applicable check passes; a
        list or stream gets the visibility that filters what it shows."""
        checks = RULES[method]
        visibility: Visibility | None = None
        ran = False
        for check in checks:
            if not _applies(check, request, principal):
                continue
            decisions = await self._decisions(check, request, principal)
            for decision in decisions:
                if not decision.allowed:
                    audit_denial(decision, method, request_id)
                    raise permission_denied(decision)
            if decisions:
                ran = True
            elif check.target in (Target.LISTED, Target.EVENTS) and check.permission:
                ran = True
                visibility = Visibility(self.authorizer, principal, check.permission)
        if not ran and any(c.when == When.ALWAYS for c in checks):
            # A request that names nothing (an empty oneof) still needs the
            # permission somewhere: the registry is the safe place to ask.
            permission = checks[0].permission
            assert permission is not None
            await self.authorizer.require(principal, permission, REGISTRY, method, request_id)
        return visibility

    async def _decisions(self, check: Check, request: Any, principal: Principal) -> list[Decision]:
        permission = check.permission
        if permission is None or check.target == Target.CALLER:
            return []
        decide = self.authorizer.decide
        target = check.target
        if target == Target.REGISTRY:
            return [await decide(principal, permission, REGISTRY)]
        if target == Target.NAME:
            names = [v for v in field_values(request, check.field) if v]
            return [
                await decide(principal, permission, name_resource(v, check.field)) for v in names
            ]
        if target == Target.POLICY:
            resource = parse_policy_resource(request.resource, "resource")
            if resource == REGISTRY and check.root_permission is not None:
                permission = check.root_permission
            return [await decide(principal, permission, resource)]
        if target == Target.TRUST_POLICY:
            model = parse_policy_name(field_values(request, check.field)[0], check.field)
            if model is None:
                return [await decide(principal, check.root_permission or permission, REGISTRY)]
            return [await decide(principal, permission, PolicyResource(model.model))]
        if target == Target.ROLLOUT:
            return [await decide(principal, permission, await self._rollout(request.name))]
        if target == Target.UPLOAD:
            return [await self._upload(principal, permission, request, check.field)]
        if target == Target.BLOB:
            digest = request.digest
            return [await self._blob(principal, permission, digest)] if digest else []
        if target == Target.EVENTS:
            f = request.filter
            named = f.model or f.resource
            return (
                [await decide(principal, permission, name_resource(named, "filter"))]
                if named
                else []
            )
        return []  # LISTED: filtered by the service through the visibility

    async def _rollout(self, value: str) -> PolicyResource:
        name = parse_rollout_name(value)
        alias = await self._lookups.rollout_alias(name)
        if alias is None:  # decide on the model: the same answer whether or not it exists
            return PolicyResource(name.model)
        return PolicyResource(alias.model, alias.alias)

    async def _upload(
        self, principal: Principal, permission: Permission, request: Any, field: str
    ) -> Decision:
        version: VersionName | None = None
        if field == "start":
            start = request.start
            if start.upload_id:
                _, version = await self._lookups.upload_version(start.upload_id)
            elif start.version:
                version = parse_version_name(start.version, "version")
            elif start.model:  # a blob upload for (and counted against) this model
                model = parse_model_name(start.model, "model")
                return await self.authorizer.decide(
                    principal, permission, PolicyResource(model.model)
                )
        elif request.upload_id:
            _, version = await self._lookups.upload_version(request.upload_id)
        if version is not None:
            return await self.authorizer.decide(
                principal, permission, PolicyResource(version.model)
            )
        return await self.authorizer.holds_anywhere(principal, permission)

    async def _blob(self, principal: Principal, permission: Permission, digest: str) -> Decision:
        check_digest(digest, "digest")
        root = await self.authorizer.decide(principal, permission, REGISTRY)
        if root.allowed:
            return root
        for model in sorted(await self._lookups.blob_models(digest)):
            decision = await self.authorizer.decide(principal, permission, PolicyResource(model))
            if decision.allowed:
                return decision
        return root
