"""`modelreg events list|watch`: the event log from the shell.

`watch` prints each event as it commits, one line each (JSON lines with
`-o json`, for piping into scripts), and keeps going across server
restarts until interrupted or `--count` events have been printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TextIO

from ..client import RegistryClient
from ..errors import RegistryError
from ..event_chain import verify_events
from ..v1 import resources_pb2 as pb
from .args import model_name
from .connection import EXIT_CODES, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, command
from .output import Listing, Result, alias_change, as_dict, format_time


async def list_(client: RegistryClient, args: argparse.Namespace) -> Result:
    items = client.list_events(
        model=model_name(args.model) if args.model else "",
        resource=model_name(args.resource) if args.resource else "",
        types=tuple(args.types or ()),
        start_revision=args.since_revision,
        page_size=args.page_size,
        request_id=args.request_id,
    )
    return Listing(pb.Event, [e async for e in items])


def event_line(event: pb.Event, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(as_dict(event), separators=(",", ":"))
    cells = [str(event.revision), format_time(event.time), event.type, event.resource]
    return "  ".join([*cells, *filter(None, [alias_change(event)]), event.actor])


async def _watch(args: argparse.Namespace, out: TextIO) -> None:
    client = RegistryClient(
        args.server,
        tls=args.tls,
        root_ca=args.ca,
        client_cert=args.cert,
        client_key=args.key,
        timeout=args.timeout,
    )
    printed = 0
    async with client:
        events = client.watch(
            model=model_name(args.model) if args.model else "",
            resource=model_name(args.resource) if args.resource else "",
            types=tuple(args.types or ()),
            start_revision=args.since_revision,
            request_id=args.request_id,
        )
        async for event in events:
            out.write(event_line(event, args.output) + "\n")
            out.flush()
            printed += 1
            if args.count and printed >= args.count:
                return


def watch(args: argparse.Namespace) -> int:
    """Not a `command()`: it prints as it goes instead of rendering one result."""
    if (args.cert is None) != (args.key is None):
        print("error: --cert and --key go together (mutual TLS)", file=sys.stderr)
        return EXIT_USAGE
    try:
        asyncio.run(_watch(args, sys.stdout))
    except RegistryError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_CODES.get(err.code, EXIT_ERROR)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return 0


async def _verify(args: argparse.Namespace) -> int:
    client = RegistryClient(
        args.server,
        tls=args.tls,
        root_ca=args.ca,
        client_cert=args.cert,
        client_key=args.key,
        timeout=args.timeout,
    )
    async with client:
        report = await verify_events(client.list_events(page_size=1000))
    if args.output == "json":
        print(json.dumps(report.__dict__))
    elif report.broken_at:
        print(f"chain broken at revision {report.broken_at}: {report.reason}")
    else:
        note = " (older events were compacted)" if report.starts_after_compaction else ""
        print(
            f"verified {report.checked} events, revisions "
            f"{report.first_revision}..{report.last_revision}{note}"
        )
    return EXIT_ERROR if report.broken_at else 0


def verify(args: argparse.Namespace) -> int:
    """Exit 0 if every event's hash and link hold, 1 at the first that does not."""
    try:
        return asyncio.run(_verify(args))
    except RegistryError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_CODES.get(err.code, EXIT_ERROR)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _add_filter(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="", help="only this model: fraud or models/fraud")
    p.add_argument(
        "--resource", default="", help="only this resource, e.g. fraud/aliases/production"
    )
    p.add_argument(
        "--type",
        dest="types",
        action="append",
        metavar="TYPE",
        help="only this event type (repeatable), e.g. ALIAS_SET",
    )


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], parent: argparse.ArgumentParser
) -> None:
    events = sub.add_parser("events", help="the event log: list it, or watch it live")
    cmds = events.add_subparsers(dest="events_command", required=True, metavar="COMMAND")

    p = cmds.add_parser("list", parents=[parent], help="list events in revision order")
    _add_filter(p)
    p.add_argument(
        "--since-revision", type=int, default=0, metavar="N", help="from revision N (inclusive)"
    )
    p.add_argument("--page-size", type=int, default=0, help="events fetched per call")
    p.set_defaults(func=command(list_))

    p = cmds.add_parser(
        "watch", parents=[parent], help="print events as they commit (Ctrl-C to stop)"
    )
    _add_filter(p)
    p.add_argument(
        "--since-revision",
        type=int,
        default=0,
        metavar="N",
        help="replay from revision N first (default: only new events)",
    )
    p.add_argument("--count", type=int, default=0, help="exit after this many events")
    p.set_defaults(func=watch)

    p = cmds.add_parser(
        "verify",
        parents=[parent],
        help="check the log's hash chain: exit 1 at the first tampered or missing event",
    )
    p.set_defaults(func=verify)
