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
from ..event_chain import load_public_key, parse_expectation, verify_events
from ..v1 import resources_pb2 as pb
from .args import model_name
from .connection import (
    EXIT_CODES,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    client_from_args,
    command,
)
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
    client = client_from_args(args)
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
    try:
        expect = [parse_expectation(text) for text in args.expect]
        public_key = load_public_key(args.public_key.read()) if args.public_key else None
    except (ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    client = client_from_args(args)
    async with client:
        report = await verify_events(client.list_events(page_size=1000), public_key, expect)
    if args.output == "json":
        print(json.dumps(report.__dict__))
    elif report.broken_at:
        print(f"chain broken at revision {report.broken_at}: {report.reason}")
    else:
        note = " (older events were compacted)" if report.starts_after_compaction else ""
        anchored = []
        if public_key is not None:
            anchored.append(f"{report.checkpoints} signed checkpoints")
        if report.anchors:
            anchored.append(f"{len(report.anchors)} expected heads")
        print(
            f"verified {report.checked} events, revisions "
            f"{report.first_revision}..{report.last_revision}{note}"
            + (f"; {' and '.join(anchored)} hold" if anchored else "")
        )
        if report.unverified:
            print(
                f"{len(report.unverified)} events (first {report.unverified[0]}) came without "
                "their snapshots, too large to send: their links hold, their own hashes were "
                "not recomputed (the server's `modelreg events verify` checks them)"
            )
        # Keep it: `--expect` it next time and a truncation behind it shows.
        print(f"head {report.last_revision}:{report.head_hash}")
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
    p.add_argument(
        "--public-key",
        type=argparse.FileType("rb"),
        metavar="PEM",
        help="the server's checkpoint public key: check every signed checkpoint in the log",
    )
    p.add_argument(
        "--expect",
        action="append",
        default=[],
        metavar="REV:HASH",
        help="a head seen before (printed by verify, or a checkpoint): it must still be in"
        " the log; repeatable",
    )
    p.set_defaults(func=verify)
