"""The `modelreg` command: the server (`serve`, `db`) and a client for it."""

from __future__ import annotations

import argparse
import sys

from . import aliases, connection, events, models, rollouts, serve, transfer, versions


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelreg",
        description="modelreg model registry",
        epilog=connection.EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    connection.add_client_options(parser, top_level=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve.add_parsers(sub)
    parent = connection.client_parent()
    models.add_parsers(sub, parent)
    versions.add_parsers(sub, parent)
    aliases.add_parsers(sub, parent)
    transfer.add_parsers(sub, parent)
    rollouts.add_parsers(sub, parent)
    events.add_parsers(sub, parent)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
