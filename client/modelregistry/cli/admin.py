"""`modelreg admin gc`: storage administration (admins only)."""

from __future__ import annotations

import argparse

from ..client import RegistryClient
from .access import duration
from .connection import command
from .output import Result


async def gc(client: RegistryClient, args: argparse.Namespace) -> Result:
    return await client.collect_garbage(
        dry_run=args.dry_run, grace=args.grace, request_id=args.request_id
    )


ADMIN_HELP = "registry administration: storage, keys, backups (admins only)"


def admin_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """The subcommands of `modelreg admin`: one group that this package's
    commands (gc) and the server's (backup, restore, rewrap) all add to,
    whichever registers first."""
    admin = sub.choices.get("admin") or sub.add_parser("admin", help=ADMIN_HELP)
    for action in admin._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return admin.add_subparsers(dest="admin_command", required=True, metavar="COMMAND")


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    cmds = admin_commands(sub)

    p = cmds.add_parser(
        "gc",
        parents=[parent],
        help="delete blobs no version, upload or lease references (safe while serving)",
    )
    p.add_argument("--dry-run", action="store_true", help="report what would go, delete nothing")
    p.add_argument(
        "--grace",
        type=duration,
        default=None,
        help="keep unreferenced blobs younger than this, e.g. 2h or 7d (at least 1m;"
        " default: the server's --gc-grace-hours)",
    )
    p.set_defaults(func=command(gc))
