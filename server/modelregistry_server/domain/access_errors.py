"""Errors of authentication and authorization.

UNAUTHENTICATED says the caller could not be identified (no credentials,
or credentials that do not verify); PERMISSION_DENIED says who the caller
is and which permission on which resource it lacks. Per AIP-211 a denial
never depends on whether the resource exists.
"""

from __future__ import annotations

from modelregistry.v1.error_reasons import ErrorMetadataKey, ErrorReason

from .errors import NotFound, PermissionDenied, Unauthenticated
from .policies import Decision


def credentials_missing() -> Unauthenticated:
    return Unauthenticated(
        ErrorReason.CREDENTIALS_MISSING,
        "this registry requires authentication: send `authorization: Bearer <token>` "
        "(a JWT from the identity provider or a service-account token) or a client certificate",
    )


def credentials_invalid(why: str) -> Unauthenticated:
    """`why` must be safe to show: a category, never token content."""
    return Unauthenticated(ErrorReason.CREDENTIALS_INVALID, f"the credentials were rejected: {why}")


def credentials_expired() -> Unauthenticated:
    return Unauthenticated(
        ErrorReason.CREDENTIALS_EXPIRED,
        "the token has expired (or is not valid yet); get a new one",
    )


def credentials_revoked() -> Unauthenticated:
    return Unauthenticated(
        ErrorReason.CREDENTIALS_REVOKED, "the service-account token has been revoked"
    )


def permission_denied(decision: Decision) -> PermissionDenied:
    return PermissionDenied(
        ErrorReason.IAM_PERMISSION_DENIED,
        decision.explain(),
        {
            ErrorMetadataKey.PERMISSION: decision.permission.value,
            ErrorMetadataKey.RESOURCE: str(decision.resource),
            ErrorMetadataKey.PRINCIPAL: decision.principal,
        },
    )


def separation_of_duties(version: str, principal: str) -> PermissionDenied:
    return PermissionDenied(
        ErrorReason.SEPARATION_OF_DUTIES,
        f"{principal} created {version} and this model requires another principal to review it",
        {ErrorMetadataKey.RESOURCE: version, ErrorMetadataKey.PRINCIPAL: principal},
    )


def token_not_found(name: str) -> NotFound:
    return NotFound(
        ErrorReason.TOKEN_NOT_FOUND, f"token {name} not found", {ErrorMetadataKey.RESOURCE: name}
    )
