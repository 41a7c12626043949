"""`modelreg versions create|get|list|update|delete`."""

from __future__ import annotations

import argparse
import asyncio

from ..artifacts import read_manifest
from ..client import RegistryClient
from ..v1 import resources_pb2 as pb
from . import rollouts
from .args import add_labels, json_object, labels_of, model_name
from .connection import UsageError, command
from .output import Deleted, Listing, Result, Sized

STATES = ("READY", "ARCHIVED")


async def create(client: RegistryClient, args: argparse.Namespace) -> Result:
    return await client.create_model_version(
        model_name(args.model),
        source_uri=args.source_uri,
        description=args.description,
        labels=labels_of(args),
        metadata=args.metadata,
        request_id=args.request_id,
    )


async def get(client: RegistryClient, args: argparse.Namespace) -> Result:
    version = await client.get_model_version(model_name(args.name), request_id=args.request_id)
    return await _sized(client, version, [version], args.output)


async def list_(client: RegistryClient, args: argparse.Namespace) -> Result:
    items = client.list_model_versions(
        model_name(args.model),
        filter=args.filter,
        page_size=args.page_size,
        request_id=args.request_id,
    )
    versions = [v async for v in items]
    return await _sized(client, Listing(pb.ModelVersion, versions), versions, args.output)


async def _sized(
    client: RegistryClient,
    result: pb.ModelVersion | Listing,
    versions: list[pb.ModelVersion],
    output: str,
) -> Result:
    """For a table, each stored artifact's model size, read from its manifest
    (a few KiB each, several at a time); JSON stays the API's answer."""
    if output == "json":
        return result
    gate = asyncio.Semaphore(8)

    async def weigh(version: pb.ModelVersion) -> tuple[str, int]:
        async with gate:
            return version.name, (await read_manifest(client, version.name)).total_bytes

    stored = [
        v for v in versions if v.artifact.digest and v.state != pb.ModelVersion.PENDING_UPLOAD
    ]
    return Sized(result, dict(await asyncio.gather(*(weigh(v) for v in stored))))


async def update(client: RegistryClient, args: argparse.Namespace) -> Result:
    version = pb.ModelVersion(name=model_name(args.name))
    mask: list[str] = []
    if args.description is not None:
        version.description = args.description
        mask.append("description")
    if args.source_uri is not None:
        version.source_uri = args.source_uri
        mask.append("source_uri")
    labels = labels_of(args)
    if labels is not None or args.clear_labels:
        version.labels.update(labels or {})
        mask.append("labels")
    if args.metadata is not None:
        version.metadata.update(args.metadata)
        mask.append("metadata")
    if args.state is not None:
        version.state = pb.ModelVersion.State.Value(args.state)
        mask.append("state")
    if not mask:
        raise UsageError(
            "nothing to update: give --description, --source-uri, --label, --metadata or --state"
        )
    return await client.update_model_version(
        version, mask, etag=args.etag, request_id=args.request_id
    )


async def delete(client: RegistryClient, args: argparse.Namespace) -> Result:
    name = model_name(args.name)
    await client.delete_model_version(
        name, etag=args.etag, force=args.force, request_id=args.request_id
    )
    return Deleted(name)


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    versions = sub.add_parser("versions", help="register and change model versions")
    cmds = versions.add_subparsers(dest="versions_command", required=True, metavar="COMMAND")
    rollouts.add_review_parsers(cmds, parent)
    version_help = "models/fraud/versions/3 or fraud/versions/3"

    p = cmds.add_parser("create", parents=[parent], help="register the next version of MODEL")
    p.add_argument("model", metavar="MODEL", help="models/fraud or fraud")
    p.add_argument("--source-uri", default="", help="where the artifact lives, e.g. s3://b/run")
    p.add_argument("--description", default="")
    add_labels(p, "label")
    p.add_argument(
        "--metadata", type=json_object, metavar="JSON", help="a JSON object, e.g. metrics"
    )
    p.set_defaults(func=command(create))

    p = cmds.add_parser("get", parents=[parent], help="show a version")
    p.add_argument("name", metavar="VERSION", help=version_help)
    p.set_defaults(func=command(get))

    p = cmds.add_parser("list", parents=[parent], help="list a model's versions, newest first")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--filter", default="", help="e.g. 'state = READY'")
    p.add_argument("--page-size", type=int, default=0, help="versions fetched per call")
    p.set_defaults(func=command(list_))

    p = cmds.add_parser("update", parents=[parent], help="change the fields given")
    p.add_argument("name", metavar="VERSION", help=version_help)
    p.add_argument("--description")
    p.add_argument("--source-uri")
    add_labels(p, "label; replaces all labels")
    p.add_argument("--clear-labels", action="store_true", help="remove all labels")
    p.add_argument("--metadata", type=json_object, metavar="JSON", help="replaces the metadata")
    p.add_argument("--state", choices=STATES, help="archive or restore the version")
    p.add_argument("--etag", default="", help="only if the version still has this etag")
    p.set_defaults(func=command(update))

    p = cmds.add_parser("delete", parents=[parent], help="delete a version")
    p.add_argument("name", metavar="VERSION", help=version_help)
    p.add_argument("--etag", default="", help="only if the version still has this etag")
    p.add_argument("--force", action="store_true", help="also delete the aliases pointing at it")
    p.set_defaults(func=command(delete))
