"""Rules of progressive rollouts: steps, advancing, and which moves are allowed."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from modelregistry.v1.error_reasons import ErrorMetadataKey, ErrorReason

from .errors import FailedPrecondition, InvalidArgument
from .resources import Rollout, RolloutState

DEFAULT_STEPS = (5, 25, 50, 100)
MAX_STEPS = 20


def check_steps(steps: Sequence[int]) -> tuple[int, ...]:
    if not steps:
        return DEFAULT_STEPS
    out = tuple(int(s) for s in steps)
    increasing = all(a < b for a, b in itertools.pairwise(out))
    if len(out) > MAX_STEPS or not increasing or out[0] < 1 or out[-1] != 100:
        raise InvalidArgument(
            ErrorReason.INVALID_STEPS,
            f"steps must be 1 to {MAX_STEPS} strictly increasing percentages ending at 100",
            "steps",
        )
    return out


def _refuse(rollout: Rollout, reason: ErrorReason, message: str) -> FailedPrecondition:
    return FailedPrecondition(
        reason,
        f"{rollout.name} is {rollout.state.value}: {message}",
        {ErrorMetadataKey.RESOURCE: str(rollout.name), ErrorMetadataKey.STATE: rollout.state.value},
    )


def _check_running(rollout: Rollout) -> None:
    if not rollout.state.running:
        raise _refuse(rollout, ErrorReason.ROLLOUT_FINISHED, "it can no longer change")


def next_percent(rollout: Rollout, requested: int) -> int:
    _check_running(rollout)
    if rollout.state is RolloutState.PAUSED:
        raise _refuse(rollout, ErrorReason.ROLLOUT_NOT_ACTIVE, "resume it before advancing")
    if requested == 0:
        return next((s for s in rollout.steps if s > rollout.percent), 100)
    if not rollout.percent < requested <= 100:
        raise InvalidArgument(
            ErrorReason.INVALID_PERCENT,
            f"percent must be above the current {rollout.percent} and at most 100",
            "percent",
        )
    return requested


def check_pause(rollout: Rollout) -> None:
    _check_running(rollout)
    if rollout.state is not RolloutState.ACTIVE:
        raise _refuse(
            rollout, ErrorReason.ROLLOUT_NOT_ACTIVE, "only an active rollout can be paused"
        )


def check_resume(rollout: Rollout) -> None:
    _check_running(rollout)
    if rollout.state is not RolloutState.PAUSED:
        raise _refuse(
            rollout, ErrorReason.ROLLOUT_NOT_PAUSED, "only a paused rollout can be resumed"
        )


def check_rollback(rollout: Rollout) -> None:
    _check_running(rollout)
