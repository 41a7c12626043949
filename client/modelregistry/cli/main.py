"""The `modelreg` command: a client for the registry, and the server's
commands (`serve`, `db`) when the server is installed.

The server adds its commands through the `modelreg.commands` entry points;
this package never imports it. Without it, those commands say how to
install it.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import EntryPoint, entry_points

from . import (
    access,
    admin,
    aliases,
    connection,
    events,
    models,
    rollouts,
    signatures,
    transfer,
    versions,
)

COMMANDS_GROUP = "modelreg.commands"
# The commands the server provides, in the order `modelreg --help` lists them.
# (`admin` is not here: it is this package's group, which the server's
# backup, restore and rewrap join when it is installed.)
SERVER_COMMANDS = {
    "serve": "run the registry server",
    "db": "database schema",
    "keyring": "key-encryption keys for encryption at rest",
}
NEEDS_SERVER = "modelreg {command} needs the server extra: pip install 'modelreg[server]'"


def _installed_commands() -> list[EntryPoint]:
    order = list(SERVER_COMMANDS)
    found = entry_points(group=COMMANDS_GROUP)
    return sorted(
        found, key=lambda ep: (order.index(ep.name) if ep.name in order else len(order), ep.name)
    )


def _not_installed(args: argparse.Namespace) -> int:
    print(NEEDS_SERVER.format(command=args.command), file=sys.stderr)
    return 1


def add_installed_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The commands other packages add (the server's), and a stand-in for
    each server command that is not installed."""
    missing = dict(SERVER_COMMANDS)
    for entry in _installed_commands():
        try:
            register = entry.load()
        except ModuleNotFoundError:
            continue
        register(sub)
        missing.pop(entry.name, None)
    for command, help_text in missing.items():
        # Takes any arguments: none of them is an option to it.
        stand_in = sub.add_parser(
            command,
            help=f"{help_text} (needs the server extra)",
            prefix_chars="\0",
            add_help=False,
        )
        stand_in.add_argument("args", nargs="*", help=argparse.SUPPRESS)
        stand_in.set_defaults(func=_not_installed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelreg",
        description="modelreg model registry",
        epilog=connection.EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    connection.add_client_options(parser, top_level=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_installed_commands(sub)
    parent = connection.client_parent()
    models.add_parsers(sub, parent)
    versions.add_parsers(sub, parent)
    aliases.add_parsers(sub, parent)
    transfer.add_parsers(sub, parent)
    rollouts.add_parsers(sub, parent)
    events.add_parsers(sub, parent)
    access.add_parsers(sub, parent)
    admin.add_parsers(sub, parent)
    signatures.add_parsers(sub, parent)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
