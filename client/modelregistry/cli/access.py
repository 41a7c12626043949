"""`modelreg iam get|set|grant|revoke|test` and `modelreg tokens create|list|revoke`.

A token's secret is printed by `tokens create` and nowhere else: the
registry keeps only a hash of it, so it cannot be shown again.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import timedelta
from pathlib import Path

from google.protobuf import json_format

from ..client import RegistryClient
from ..v1 import access_service_pb2 as acc
from .connection import command
from .output import Listing, Result

RESOURCE_HELP = "registry, models/fraud or models/fraud/aliases/production (or fraud, ...)"
_DURATION = re.compile(r"([1-9][0-9]*)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def duration(value: str) -> timedelta:
    """`90s`, `30m`, `12h` or `30d`."""
    m = _DURATION.fullmatch(value)
    if not m:
        raise argparse.ArgumentTypeError(f"expected a duration such as 30d or 12h, got {value!r}")
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


def resource(value: str) -> str:
    if value == "registry" or value.startswith("models/"):
        return value
    return f"models/{value}"


async def get(client: RegistryClient, args: argparse.Namespace) -> Result:
    return await client.get_iam_policy(args.resource, request_id=args.request_id)


def policy_file(value: str) -> acc.Policy:
    """A policy in the proto3 JSON form `iam get -o json` prints; `-` is stdin."""
    try:
        text = sys.stdin.read() if value == "-" else Path(value).read_text()
        return json_format.Parse(text, acc.Policy())
    except OSError as err:
        raise argparse.ArgumentTypeError(f"cannot read {value}: {err.strerror}") from None
    except (json_format.ParseError, json.JSONDecodeError) as err:
        raise argparse.ArgumentTypeError(f"{value}: not a policy ({err})") from None


async def set_(client: RegistryClient, args: argparse.Namespace) -> Result:
    return await client.set_iam_policy(args.resource, args.policy, request_id=args.request_id)


async def grant(client: RegistryClient, args: argparse.Namespace) -> Result:
    return await client.grant(args.resource, args.role, args.member, request_id=args.request_id)


async def revoke(client: RegistryClient, args: argparse.Namespace) -> Result:
    return await client.revoke_role(
        args.resource, args.role, args.member, request_id=args.request_id
    )


async def test(client: RegistryClient, args: argparse.Namespace) -> Result:
    return await client.test_iam_permissions(
        args.resource, args.permissions, principal=args.principal, request_id=args.request_id
    )


async def create_token(client: RegistryClient, args: argparse.Namespace) -> Result:
    created = await client.create_service_account_token(
        args.service_account,
        ttl=args.expires,
        description=args.description,
        request_id=args.request_id,
    )
    print(
        "the secret below is shown only now: store it (e.g. as MODELREG_TOKEN) before you go on",
        file=sys.stderr,
    )
    return created


async def list_tokens(client: RegistryClient, args: argparse.Namespace) -> Result:
    items = client.list_service_account_tokens(
        args.service_account, show_inactive=args.all, request_id=args.request_id
    )
    return Listing(acc.ServiceAccountToken, [t async for t in items])


async def revoke_token(client: RegistryClient, args: argparse.Namespace) -> Result:
    return await client.revoke_service_account_token(args.name, request_id=args.request_id)


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    iam = sub.add_parser("iam", help="who may do what: policies on the registry, models, aliases")
    cmds = iam.add_subparsers(dest="iam_command", required=True, metavar="COMMAND")

    p = cmds.add_parser("get", parents=[parent], help="show a resource's policy and etag")
    p.add_argument("resource", type=resource, metavar="RESOURCE", help=RESOURCE_HELP)
    p.set_defaults(func=command(get))

    p = cmds.add_parser(
        "set", parents=[parent], help="replace a policy from a JSON file (as `iam get -o json`)"
    )
    p.add_argument("resource", type=resource, metavar="RESOURCE", help=RESOURCE_HELP)
    p.add_argument(
        "policy",
        type=policy_file,
        metavar="FILE",
        help="the policy as JSON, `-` for stdin; its etag makes the "
        "write conditional (exit 5 if the policy changed since)",
    )
    p.set_defaults(func=command(set_))

    for name, func, verb in (("grant", grant, "add"), ("revoke", revoke, "remove")):
        p = cmds.add_parser(
            name, parents=[parent], help=f"{verb} one member of one role (retries on races)"
        )
        p.add_argument("resource", type=resource, metavar="RESOURCE", help=RESOURCE_HELP)
        p.add_argument("role", metavar="ROLE", help="e.g. roles/deployer")
        p.add_argument("member", metavar="MEMBER", help="user:ID, serviceAccount:NAME, ...")
        p.set_defaults(func=command(func))

    p = cmds.add_parser(
        "test", parents=[parent], help="which permissions a principal holds there, and why"
    )
    p.add_argument("resource", type=resource, metavar="RESOURCE", help=RESOURCE_HELP)
    p.add_argument("permissions", nargs="+", metavar="PERMISSION", help="e.g. aliases.set")
    p.add_argument("--principal", default="", help="whom to test (default: yourself)")
    p.set_defaults(func=command(test))

    tokens = sub.add_parser("tokens", help="service-account tokens issued by the registry")
    cmds = tokens.add_subparsers(dest="tokens_command", required=True, metavar="COMMAND")

    p = cmds.add_parser("create", parents=[parent], help="issue a token (its secret shown once)")
    p.add_argument("--service-account", required=True, metavar="NAME", help="e.g. ci-deployer")
    p.add_argument("--expires", type=duration, default=None, help="e.g. 30d; default: never")
    p.add_argument("--description", default="", help="what it is for")
    p.set_defaults(func=command(create_token))

    p = cmds.add_parser("list", parents=[parent], help="list tokens (never their secrets)")
    p.add_argument("--service-account", default="", metavar="NAME", help="only this account's")
    p.add_argument("--all", action="store_true", help="also revoked and expired ones")
    p.set_defaults(func=command(list_tokens))

    p = cmds.add_parser("revoke", parents=[parent], help="revoke a token, on every replica")
    p.add_argument("name", metavar="NAME", help="serviceAccounts/ci/tokens/0123456789abcdef")
    p.set_defaults(func=command(revoke_token))
