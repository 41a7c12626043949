"""Business rules that do not depend on storage."""

from __future__ import annotations

from modelregistry.v1.error_reasons import ErrorMetadataKey, ErrorReason

from .errors import FailedPrecondition
from .resources import VersionState

_ALLOWED = {
    (VersionState.READY, VersionState.ARCHIVED),
    (VersionState.ARCHIVED, VersionState.READY),
}


def check_state_transition(name: str, current: VersionState, new: VersionState) -> None:
    """Users may archive a READY version and restore an ARCHIVED one.

    PENDING_UPLOAD -> READY happens only when an upload is verified.
    """
    if current == new or (current, new) in _ALLOWED:
        return
    raise FailedPrecondition(
        ErrorReason.INVALID_STATE_TRANSITION,
        f"{name}: cannot change state from {current.value} to {new.value}",
        {
            ErrorMetadataKey.RESOURCE: name,
            ErrorMetadataKey.FROM: current.value,
            ErrorMetadataKey.TO: new.value,
        },
    )


def initial_state(source_uri: str) -> VersionState:
    """A version that points at an external source is usable at once."""
    return VersionState.READY if source_uri else VersionState.PENDING_UPLOAD


def version_not_ready(name: str, state: VersionState) -> FailedPrecondition:
    return FailedPrecondition(
        ErrorReason.VERSION_NOT_READY,
        f"{name} is {state.value}; only READY versions can be the target of an alias",
        {ErrorMetadataKey.RESOURCE: name, ErrorMetadataKey.STATE: state.value},
    )


def version_has_aliases(name: str, aliases: list[str]) -> FailedPrecondition:
    shown = ", ".join(sorted(aliases)[:5])
    return FailedPrecondition(
        ErrorReason.VERSION_HAS_ALIASES,
        f"{name} is the target of aliases ({shown}); move them first or use force",
        {ErrorMetadataKey.RESOURCE: name},
    )
