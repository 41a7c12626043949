"""`modelreg rollouts ...`, `modelreg versions approve|reject` and `modelreg promote`."""

from __future__ import annotations

import argparse

from ..client import RegistryClient
from ..v1 import resources_pb2 as pb
from .args import model_name
from .connection import command
from .output import Listing, Result

ROLLOUT_HELP = "models/fraud/rollouts/<id> or fraud/rollouts/<id>"


def steps(value: str) -> list[int]:
    try:
        return [int(s) for s in value.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("steps: comma-separated percentages") from None


def move(value: str) -> tuple[str, str, str]:
    """ALIAS=VERSION[@ETAG], e.g. production=7@1a-3."""
    alias, sep, rest = value.partition("=")
    if not sep or not alias or not rest:
        raise argparse.ArgumentTypeError(f"{value!r}: expected ALIAS=VERSION[@ETAG]")
    version, _, etag = rest.partition("@")
    return alias, version, etag


async def start(client: RegistryClient, args: argparse.Namespace) -> Result:
    candidate: int | str = int(args.version) if args.version.isdigit() else args.version
    return await client.start_rollout(
        model_name(args.alias),
        candidate if isinstance(candidate, int) else model_name(candidate),
        steps=args.steps,
        alias_etag=args.alias_etag,
        request_id=args.request_id,
    )


async def get(client: RegistryClient, args: argparse.Namespace) -> Result:
    return await client.get_rollout(model_name(args.name), request_id=args.request_id)


async def list_(client: RegistryClient, args: argparse.Namespace) -> Result:
    items = client.list_rollouts(
        model_name(args.model), active_only=args.active, request_id=args.request_id
    )
    return Listing(pb.Rollout, [r async for r in items])


async def advance(client: RegistryClient, args: argparse.Namespace) -> Result:
    return await client.advance_rollout(
        model_name(args.name),
        percent=args.percent,
        etag=args.etag,
        require_warm=args.require_warm,
        request_id=args.request_id,
    )


async def pause(client: RegistryClient, args: argparse.Namespace) -> Result:
    return await client.pause_rollout(
        model_name(args.name), etag=args.etag, request_id=args.request_id
    )


async def resume(client: RegistryClient, args: argparse.Namespace) -> Result:
    return await client.resume_rollout(
        model_name(args.name), etag=args.etag, request_id=args.request_id
    )


async def rollback(client: RegistryClient, args: argparse.Namespace) -> Result:
    return await client.rollback_rollout(
        model_name(args.name), etag=args.etag, request_id=args.request_id
    )


async def approve(client: RegistryClient, args: argparse.Namespace) -> Result:
    return await client.approve_model_version(
        model_name(args.name), comment=args.comment, etag=args.etag, request_id=args.request_id
    )


async def reject(client: RegistryClient, args: argparse.Namespace) -> Result:
    return await client.reject_model_version(
        model_name(args.name), comment=args.comment, etag=args.etag, request_id=args.request_id
    )


async def promote(client: RegistryClient, args: argparse.Namespace) -> Result:
    model = model_name(args.model)
    moves = [
        (
            f"{model}/aliases/{alias}",
            int(version) if version.isdigit() else model_name(version),
            etag,
        )
        for alias, version, etag in args.moves
    ]
    aliases = await client.batch_set_aliases(model, moves, request_id=args.request_id)
    return Listing(pb.Alias, aliases)


def _etag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--etag", default="", help="only if unchanged since this etag (exit 5 if not)")


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    rollouts = sub.add_parser("rollouts", help="progressive rollouts of an alias (5/25/50/100)")
    cmds = rollouts.add_subparsers(dest="rollouts_command", required=True, metavar="COMMAND")

    p = cmds.add_parser("start", parents=[parent], help="start rolling an alias out")
    p.add_argument("alias", metavar="ALIAS", help="models/fraud/aliases/production")
    p.add_argument("version", metavar="VERSION", help="candidate: 7 or models/fraud/versions/7")
    p.add_argument("--steps", type=steps, default=[], help="e.g. 5,25,50,100 (the default)")
    p.add_argument("--alias-etag", default="", help="only if the alias is unchanged")
    p.set_defaults(func=command(start))

    p = cmds.add_parser("get", parents=[parent], help="show a rollout")
    p.add_argument("name", metavar="ROLLOUT", help=ROLLOUT_HELP)
    p.set_defaults(func=command(get))

    p = cmds.add_parser("list", parents=[parent], help="a model's rollouts, newest first")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--active", action="store_true", help="only ACTIVE or PAUSED ones")
    p.set_defaults(func=command(list_))

    p = cmds.add_parser("advance", parents=[parent], help="next step, or --percent")
    p.add_argument("name", metavar="ROLLOUT", help=ROLLOUT_HELP)
    p.add_argument("--percent", type=int, default=0, help="target percent (100 completes)")
    p.add_argument(
        "--require-warm",
        action="store_true",
        help="only if every regional edge holds the candidate's artifact (else NOT_WARM)",
    )
    _etag(p)
    p.set_defaults(func=command(advance))

    for verb, func, text in (
        ("pause", pause, "hold the rollout at its percent"),
        ("resume", resume, "let a paused rollout advance again"),
        ("rollback", rollback, "send every instance back to the stable version"),
    ):
        p = cmds.add_parser(verb, parents=[parent], help=text)
        p.add_argument("name", metavar="ROLLOUT", help=ROLLOUT_HELP)
        _etag(p)
        p.set_defaults(func=command(func))

    p = sub.add_parser(
        "promote", parents=[parent], help="move several aliases of a model in one transaction"
    )
    p.add_argument("model", metavar="MODEL")
    p.add_argument(
        "moves",
        metavar="ALIAS=VERSION[@ETAG]",
        nargs="+",
        type=move,
        help="e.g. production=7@<etag> previous=6",
    )
    p.set_defaults(func=command(promote))


def add_review_parsers(
    cmds: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    """`versions approve|reject`, added to the versions command."""
    for verb, func, text in (
        ("approve", approve, "approve a version (needed for protected aliases)"),
        ("reject", reject, "reject a version"),
    ):
        p = cmds.add_parser(verb, parents=[parent], help=text)
        p.add_argument("name", metavar="VERSION", help="models/fraud/versions/7")
        p.add_argument("--comment", default="", help="why")
        _etag(p)
        p.set_defaults(func=command(func))
