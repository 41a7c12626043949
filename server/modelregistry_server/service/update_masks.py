"""Update masks (AIP-134): which fields an Update call writes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from modelregistry.v1.error_reasons import ErrorReason

from ..domain.errors import InvalidArgument


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
            f"update_mask: cannot update {', '.join(unknown)} "
            f"(updatable: {', '.join(sorted(allowed))})",
            "update_mask",
        )
    return frozenset(given)
