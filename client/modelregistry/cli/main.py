"""The `modelreg` command."""

from __future__ import annotations

import argparse
import sys

from . import serve


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelreg", description="modelreg model registry")
    sub = parser.add_subparsers(dest="command", required=True)
    serve.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
