"""docs/operations.md names `modelreg serve` flags in commands and prose:
each one must exist, so that the guide cannot drift from the CLI."""

from __future__ import annotations

import re
from pathlib import Path

from support.cli_help import admin_flags, db_upgrade_flags, flags_in, serve_flags

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
# Flags of other programs that the guide's prose mentions.
OTHER_TOOLS = {"--build-arg", "--volume", "--format"}


def commands() -> list[list[str]]:
    """Each command line of the guide's shell blocks, continuations joined."""
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(), re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [line.split() for line in lines if line.strip() and not line.startswith("#")]


def test_commands_use_real_flags() -> None:
    checked = 0
    for words in commands():
        for i, word in enumerate(words):
            rest = words[i + 1 :]
            if word.startswith("modelreg:") or words[i - 1 : i + 1] == ["modelreg", "serve"]:
                assert set(flags_in(rest)) <= serve_flags(), words
                checked += 1
            elif words[i : i + 2] == ["db", "upgrade"]:
                assert set(flags_in(rest[1:])) <= db_upgrade_flags(), words
                checked += 1
            elif words[i : i + 1] == ["admin"] and rest[:1] in (["backup"], ["restore"]):
                assert set(flags_in(rest[1:])) <= admin_flags(), words
                checked += 1
    assert checked >= 3


def test_prose_names_real_flags() -> None:
    named = set(re.findall(r"`(--[a-z][a-z0-9-]*)", DOC.read_text()))
    assert named, "no flags found"
    unknown = named - serve_flags() - db_upgrade_flags() - admin_flags() - OTHER_TOOLS
    assert not unknown, unknown
