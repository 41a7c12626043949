"""Business rules that do not depend on storage."""

from __future__ import annotations

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
        "INVALID_STATE_TRANSITION",
        f"{name}: cannot change state from {current.value} to {new.value}",
        {"resource": name, "from": current.value, "to": new.value},
    )


def initial_state(source_uri: str) -> VersionState:
    """A version that points at an external source is usable at once."""
    return VersionState.READY if source_uri else VersionState.PENDING_UPLOAD


def version_not_ready(name: str, state: VersionState) -> FailedPrecondition:
    return FailedPrecondition(
        "VERSION_NOT_READY",
        f"{name} is {state.value}; only READY versions can be the target of an alias",
        {"resource": name, "state": state.value},
    )


def version_has_aliases(name: str, aliases: list[str]) -> FailedPrecondition:
    shown = ", ".join(sorted(aliases)[:5])
    return FailedPrecondition(
        "VERSION_HAS_ALIASES",
        f"{name} is the target of aliases ({shown}); move them first or use force",
        {"resource": name},
    )
