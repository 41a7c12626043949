"""The approval gate: a protected alias only ever points at an APPROVED version.

The store enforces this where aliases move (see aliases_sql); these rules
close the other doors: protecting an alias that already points at an
unapproved version, and rejecting or archiving a version that a protected
alias points at (or that a running rollout of one is moving it to).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from modelregistry.v1.error_reasons import ErrorMetadataKey, ErrorReason

from .errors import FailedPrecondition
from .resources import ApprovalState


def check_protecting(
    newly_protected: Iterable[str], targets: Mapping[str, tuple[str, str]]
) -> None:
    """`targets`: alias -> (version name, approval state) for the aliases that
    exist. Each alias being protected must point at an APPROVED version."""
    for alias in sorted(newly_protected):
        found = targets.get(alias)
        if found is None:
            continue
        version, state = found
        if state != ApprovalState.APPROVED.value:
            raise FailedPrecondition(
                ErrorReason.VERSION_NOT_APPROVED,
                f"cannot protect alias {alias!r}: it points at {version}, which is {state}; "
                "approve that version or move the alias first",
                {ErrorMetadataKey.RESOURCE: version, ErrorMetadataKey.ALIAS: alias},
            )


def check_not_protected_target(version: str, aliases: Iterable[str], action: str) -> None:
    """`aliases`: the protected aliases that point at `version` or are being
    rolled out to it. `action`: what was asked, e.g. "reject"."""
    found = sorted(set(aliases))
    if found:
        shown = ", ".join(found[:5])
        raise FailedPrecondition(
            ErrorReason.PROTECTED_ALIAS_TARGET,
            f"cannot {action} {version}: protected aliases point at it ({shown}); "
            "move them to another approved version first",
            {ErrorMetadataKey.RESOURCE: version, ErrorMetadataKey.ALIASES: ",".join(found)[:512]},
        )
