"""`modelreg models create|get|list|update|delete`."""

from __future__ import annotations

import argparse

from ..client import RegistryClient
from ..v1 import resources_pb2 as pb
from .args import add_labels, byte_size, labels_of, model_name
from .connection import UsageError, command
from .output import Deleted, Listing, Result
from .signatures import add_trust_options, trust_requested, update_trust


async def create(client: RegistryClient, args: argparse.Namespace) -> Result:
    return await client.create_model(
        args.model_id,
        display_name=args.display_name,
        description=args.description,
        labels=labels_of(args),
        protected_aliases=args.protected_alias,
        separation_of_duties=args.separation_of_duties,
        request_id=args.request_id,
    )


async def get(client: RegistryClient, args: argparse.Namespace) -> Result:
    return await client.get_model(
        model_name(args.name), storage_usage=True, request_id=args.request_id
    )


async def list_(client: RegistryClient, args: argparse.Namespace) -> Result:
    items = client.list_models(
        filter=args.filter, page_size=args.page_size, request_id=args.request_id
    )
    return Listing(pb.Model, [m async for m in items])


async def update(client: RegistryClient, args: argparse.Namespace) -> Result:
    model = pb.Model(name=model_name(args.name))
    mask: list[str] = []
    if args.display_name is not None:
        model.display_name = args.display_name
        mask.append("display_name")
    if args.description is not None:
        model.description = args.description
        mask.append("description")
    labels = labels_of(args)
    if labels is not None or args.clear_labels:
        model.labels.update(labels or {})
        mask.append("labels")
    if args.protected_alias or args.clear_protected_aliases:
        model.protected_aliases.extend(args.protected_alias)
        mask.append("protected_aliases")
    if args.separation_of_duties is not None:
        model.separation_of_duties = args.separation_of_duties
        mask.append("separation_of_duties")
    if args.storage_quota is not None:
        model.storage_quota_bytes = args.storage_quota
        mask.append("storage_quota_bytes")
    trust = trust_requested(args)
    if not mask and not trust:
        raise UsageError(
            "nothing to update: give --display-name, --description, --label, "
            "--protected-alias, --[no-]separation-of-duties, --storage-quota, "
            "--trusted-key, --trusted-chain or --require-signature"
        )
    updated = None
    if mask:
        updated = await client.update_model(model, mask, etag=args.etag, request_id=args.request_id)
    if trust:
        policy = await update_trust(client, model.name, args)
        if updated is None:
            return policy
    assert updated is not None
    return updated


async def delete(client: RegistryClient, args: argparse.Namespace) -> Result:
    name = model_name(args.name)
    await client.delete_model(name, etag=args.etag, force=args.force, request_id=args.request_id)
    return Deleted(name)


def add_protection(parser: argparse.ArgumentParser, more: str) -> None:
    parser.add_argument(
        "--protected-alias",
        action="append",
        default=[],
        metavar="ALIAS",
        help=f"alias that only APPROVED versions may reach; repeat{more}",
    )


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    models = sub.add_parser("models", help="create, inspect and change models")
    cmds = models.add_subparsers(dest="models_command", required=True, metavar="COMMAND")

    p = cmds.add_parser("create", parents=[parent], help="create models/MODEL_ID")
    p.add_argument("model_id", metavar="MODEL_ID", help="e.g. fraud")
    p.add_argument("--display-name", default="")
    p.add_argument("--description", default="")
    add_labels(p, "label")
    add_protection(p, "")
    p.add_argument(
        "--separation-of-duties",
        action="store_true",
        help="a version's creator may not approve or reject it",
    )
    p.set_defaults(func=command(create))

    p = cmds.add_parser("get", parents=[parent], help="show a model")
    p.add_argument("name", metavar="MODEL", help="models/fraud or fraud")
    p.set_defaults(func=command(get))

    p = cmds.add_parser("list", parents=[parent], help="list every model, in name order")
    p.add_argument("--filter", default="", help="e.g. 'labels.team = \"risk\"'")
    p.add_argument("--page-size", type=int, default=0, help="models fetched per call")
    p.set_defaults(func=command(list_))

    p = cmds.add_parser("update", parents=[parent], help="change the fields given")
    p.add_argument("name", metavar="MODEL")
    p.add_argument("--display-name")
    p.add_argument("--description")
    add_labels(p, "label; replaces all labels")
    p.add_argument("--clear-labels", action="store_true", help="remove all labels")
    add_protection(p, "; replaces the list")
    p.add_argument(
        "--clear-protected-aliases", action="store_true", help="protect no alias any more"
    )
    p.add_argument(
        "--separation-of-duties",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="whether a version's creator is barred from reviewing it",
    )
    p.add_argument(
        "--storage-quota",
        type=byte_size,
        default=None,
        metavar="SIZE",
        help="bytes its versions and open uploads may store, e.g. 500GiB or 2TB; 0: the"
        " registry default (owners and admins only)",
    )
    add_trust_options(p)
    p.add_argument("--etag", default="", help="only if the model still has this etag")
    p.set_defaults(func=command(update))

    p = cmds.add_parser("delete", parents=[parent], help="delete a model")
    p.add_argument("name", metavar="MODEL")
    p.add_argument("--etag", default="", help="only if the model still has this etag")
    p.add_argument("--force", action="store_true", help="also delete its versions and aliases")
    p.set_defaults(func=command(delete))
