"""Argument types shared by the resource subcommands.

Names may be given with or without the leading `models/`, since people
type `fraud` and scripts pass back the full names the server returned.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def model_name(value: str) -> str:
    return value if value.startswith("models/") else f"models/{value}"


def label(value: str) -> tuple[str, str]:
    """`key=value` (the value may be empty)."""
    key, sep, val = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {value!r}")
    return key, val


def json_object(value: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON: {err}") from err
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError("expected a JSON object, e.g. '{\"auc\": 0.91}'")
    return parsed


def add_labels(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--label",
        dest="labels",
        metavar="KEY=VALUE",
        type=label,
        action="append",
        help=f"{what} (repeatable)",
    )


def labels_of(args: argparse.Namespace) -> dict[str, str] | None:
    """The labels given with --label (None if there were none); later wins."""
    given: list[tuple[str, str]] | None = args.labels
    return dict(given) if given is not None else None
