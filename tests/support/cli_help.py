"""The flags `modelreg serve` and `modelreg db upgrade` accept, from their
own --help, so deployment files can be checked against the real CLI."""

from __future__ import annotations

import functools
import os
import re
import subprocess

from support.processes import CLI

_FLAG = re.compile(r"(?<![\w-])--[a-z0-9][a-z0-9-]*")


@functools.cache
def flags_of(*command: str) -> frozenset[str]:
    shown = subprocess.run(
        [*CLI, *command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "COLUMNS": "1000"},  # no flag broken across lines
    )
    return frozenset(_FLAG.findall(shown.stdout)) - {"--help"}


def serve_flags() -> frozenset[str]:
    return flags_of("serve")


def db_upgrade_flags() -> frozenset[str]:
    return flags_of("db", "upgrade")


def admin_flags() -> frozenset[str]:
    return flags_of("admin", "backup") | flags_of("admin", "restore")


def flags_in(args: list[str]) -> list[str]:
    """The `--flag` words of a command line (`--flag=value` counts as `--flag`)."""
    return [arg.split("=", 1)[0] for arg in args if arg.startswith("--")]


def flag_value(args: list[str], flag: str) -> str | None:
    """The value after `flag` (or in `flag=value`), None when absent."""
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None
