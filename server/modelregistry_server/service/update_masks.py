"""Update masks (AIP-134): which fields an Update call writes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from modelregistry.v1.error_reasons import ErrorReason

from ..domain.errors import InvalidArgument

# More paths than any resource has fields is a malformed request; unknown
# paths are quoted back shortened, so an error never grows with the input.
MAX_PATHS = 32
_SHOWN_PATHS = 3
_SHOWN_PATH_CHARS = 64


def _shown(paths: list[str]) -> str:
    shown = [
        p if len(p) <= _SHOWN_PATH_CHARS else p[: _SHOWN_PATH_CHARS - 3] + "..." for p in paths
    ]
    more = len(paths) - _SHOWN_PATHS
    return ", ".join(shown[:_SHOWN_PATHS]) + (f" and {more} more" if more > 0 else "")


def resolve_mask(
    paths: Iterable[str],
    allowed: frozenset[str],
    populated: Mapping[str, bool],
    star: frozenset[str],
) -> frozenset[str]:
    """The fields to write.

    An empty mask means every allowed field the request populates; `*` means
    the fields in `star`; any other path must be one of `allowed`.
    """
    given = list(paths)
    if len(given) > MAX_PATHS:
        raise InvalidArgument(
            ErrorReason.INVALID_UPDATE_MASK,
            f"update_mask: at most {MAX_PATHS} paths",
            "update_mask",
        )
    if not given:
        chosen = frozenset(p for p in allowed if populated.get(p))
        if not chosen:
            raise InvalidArgument(
                ErrorReason.INVALID_UPDATE_MASK, "nothing to update: set update_mask", "update_mask"
            )
        return chosen
    if given == ["*"]:
        return star
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise InvalidArgument(
            ErrorReason.INVALID_UPDATE_MASK,
            f"update_mask: cannot update {_shown(unknown)} "
            f"(updatable: {', '.join(sorted(allowed))})",
            "update_mask",
        )
    return frozenset(given)
