"""Argument types shared by the resource subcommands.

Names may be given with or without the leading `models/`, since people
type `fraud` and scripts pass back the full names the server returned.
"""

from __future__ import annotations

import argparse
import json
import re
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


_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([KMGTP]i?B|B)?", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "pb": 1000**5,
}
_SIZE_UNITS.update({"kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4, "pib": 1024**5})


def byte_size(value: str) -> int:
    """`1048576`, `500MiB`, `2TB`, `1.5GiB`."""
    m = _SIZE.fullmatch(value.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"expected a size such as 500GiB or 2TB, got {value!r}")
    return int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "").lower()])
