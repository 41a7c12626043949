"""What every client subcommand shares: where the server is, how to talk to
it, how results are printed and how failures become exit codes."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc

from ..client import RegistryClient
from ..errors import RegistryError
from ..transport import DEFAULT_TARGET
from .output import Result, render

Handler = Callable[[RegistryClient, argparse.Namespace], Awaitable[Result]]

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_CODES: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: EXIT_USAGE,
    grpc.StatusCode.NOT_FOUND: 3,
    grpc.StatusCode.ALREADY_EXISTS: 4,
    grpc.StatusCode.ABORTED: 5,
    grpc.StatusCode.FAILED_PRECONDITION: 6,
    grpc.StatusCode.UNAVAILABLE: 7,
    grpc.StatusCode.UNAUTHENTICATED: 8,
    grpc.StatusCode.PERMISSION_DENIED: 9,
}

EXIT_STATUS_HELP = """\
exit status:
  0  success
  1  any other error (INTERNAL, DEADLINE_EXCEEDED, ...)
  2  bad usage, or INVALID_ARGUMENT from the server
  3  NOT_FOUND
  4  ALREADY_EXISTS
  5  ABORTED (ETAG_MISMATCH: re-read and retry)
  6  FAILED_PRECONDITION
  7  UNAVAILABLE (retry later)
  8  UNAUTHENTICATED (no token or certificate, or one that does not verify)
  9  PERMISSION_DENIED (the message names the permission and the roles that grant it)

errors are printed to stderr as `error: <CODE> <REASON>: <message>`.
"""


class UsageError(Exception):
    """A request the command refuses before calling the server."""


def add_client_options(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    """The connection and output options.

    They are accepted both before and after the subcommand; after it they
    default to SUPPRESS so that an absent option does not mask one given
    before the subcommand.
    """

    def default(value: object) -> object:
        return value if top_level else argparse.SUPPRESS

    group = parser.add_argument_group("connection and output")
    group.add_argument(
        "--server",
        metavar="HOST:PORT",
        default=default(os.environ.get("MODELREG_SERVER") or DEFAULT_TARGET),
        help=f"registry address (default: $MODELREG_SERVER, else {DEFAULT_TARGET})",
    )
    group.add_argument(
        "--ca", type=Path, default=default(None), help="CA certificate (PEM); turns on TLS"
    )
    group.add_argument(
        "--cert", type=Path, default=default(None), help="client certificate (PEM), mutual TLS"
    )
    group.add_argument(
        "--key", type=Path, default=default(None), help="client private key (PEM), mutual TLS"
    )
    group.add_argument(
        "--tls", action="store_true", default=default(False), help="TLS with the system CAs"
    )
    group.add_argument(
        "--token",
        default=default(None),
        help="bearer token (a JWT or a service-account token); default: $MODELREG_TOKEN. "
        "Visible to other local users in the process list: prefer the variable or --token-file",
    )
    group.add_argument(
        "--token-file",
        type=Path,
        default=default(None),
        help="read the bearer token from this file (default: $MODELREG_TOKEN_FILE)",
    )
    group.add_argument(
        "-o",
        "--output",
        choices=("table", "json"),
        default=default("table"),
        help="table (for people, the default) or json (for scripts)",
    )
    group.add_argument(
        "--timeout", type=float, default=default(10.0), help="seconds per call (default 10)"
    )
    group.add_argument(
        "--request-id", default=default(None), help="sent as x-request-id, for the server logs"
    )


def client_parent() -> argparse.ArgumentParser:
    """A parent parser giving a subcommand the client options."""
    parent = argparse.ArgumentParser(add_help=False)
    add_client_options(parent, top_level=False)
    return parent


def command(handler: Handler) -> Callable[[argparse.Namespace], int]:
    """Wraps `handler` into the `func` the main parser dispatches to."""

    def run(args: argparse.Namespace) -> int:
        if (args.cert is None) != (args.key is None):
            print("error: --cert and --key go together (mutual TLS)", file=sys.stderr)
            return EXIT_USAGE
        try:
            return asyncio.run(_run(handler, args))
        except RegistryError as err:
            print(f"error: {err}", file=sys.stderr)
            return EXIT_CODES.get(err.code, EXIT_ERROR)
        except (OSError, UsageError) as err:
            print(f"error: {err}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED

    return run


def client_from_args(args: argparse.Namespace) -> RegistryClient:
    """A client as the connection options say (token from them or the environment)."""
    return RegistryClient(
        args.server,
        tls=args.tls,
        root_ca=args.ca,
        client_cert=args.cert,
        client_key=args.key,
        timeout=args.timeout,
        token=args.token,
        token_file=args.token_file,
    )


async def _run(handler: Handler, args: argparse.Namespace) -> int:
    async with client_from_args(args) as client:
        result = await handler(client, args)
    render(result, args.output, sys.stdout)
    return 0
