"""`modelreg aliases set|get|list|delete` and `modelreg resolve`."""

from __future__ import annotations

import argparse

from ..client import RegistryClient
from ..v1 import resources_pb2 as pb
from .args import model_name
from .connection import command
from .output import Deleted, Listing, Result

ALIAS_HELP = "models/fraud/aliases/production or fraud/aliases/production"


def version_arg(value: str) -> int | str:
    """A number of the alias's model, or a full version name."""
    return int(value) if value.isdigit() else model_name(value)


async def set_(client: RegistryClient, args: argparse.Namespace) -> Result:
    return await client.set_alias(
        model_name(args.name), args.version, etag=args.etag, request_id=args.request_id
    )


async def get(client: RegistryClient, args: argparse.Namespace) -> Result:
    return await client.get_alias(model_name(args.name), request_id=args.request_id)


async def list_(client: RegistryClient, args: argparse.Namespace) -> Result:
    items = client.list_aliases(
        model_name(args.model), page_size=args.page_size, request_id=args.request_id
    )
    return Listing(pb.Alias, [a async for a in items])


async def delete(client: RegistryClient, args: argparse.Namespace) -> Result:
    name = model_name(args.name)
    await client.delete_alias(name, etag=args.etag, request_id=args.request_id)
    return Deleted(name)


async def resolve(client: RegistryClient, args: argparse.Namespace) -> Result:
    return await client.resolve_alias(model_name(args.name), request_id=args.request_id)


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    aliases = sub.add_parser("aliases", help="point aliases (production, staging...) at versions")
    cmds = aliases.add_subparsers(dest="aliases_command", required=True, metavar="COMMAND")

    p = cmds.add_parser("set", parents=[parent], help="create or move an alias")
    p.add_argument("name", metavar="ALIAS", help=ALIAS_HELP)
    p.add_argument(
        "version", metavar="VERSION", type=version_arg, help="3, or models/fraud/versions/3"
    )
    p.add_argument(
        "--etag",
        default="",
        help="compare-and-set: only if the alias still has this etag (exit 5 if not)",
    )
    p.set_defaults(func=command(set_))

    p = cmds.add_parser("get", parents=[parent], help="show an alias")
    p.add_argument("name", metavar="ALIAS", help=ALIAS_HELP)
    p.set_defaults(func=command(get))

    p = cmds.add_parser("list", parents=[parent], help="list a model's aliases")
    p.add_argument("model", metavar="MODEL", help="models/fraud or fraud")
    p.add_argument("--page-size", type=int, default=0, help="aliases fetched per call")
    p.set_defaults(func=command(list_))

    p = cmds.add_parser("delete", parents=[parent], help="delete an alias")
    p.add_argument("name", metavar="ALIAS", help=ALIAS_HELP)
    p.add_argument("--etag", default="", help="only if the alias still has this etag")
    p.set_defaults(func=command(delete))

    p = sub.add_parser(
        "resolve", parents=[parent], help="what an alias points at: version and artifact"
    )
    p.add_argument("name", metavar="ALIAS", help=ALIAS_HELP)
    p.set_defaults(func=command(resolve))
