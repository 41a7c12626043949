"""`modelreg keyring create|rotate PATH` and `modelreg admin rewrap`: keys for encryption at rest.

Server-side commands (they need the keyring file and the blob store itself,
not a server): see `blobs/encryption` for what the keys protect. Like
`cli.py`, loading this module stays cheap; the work is imported when a
command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from .cli import Subparsers, add_config_flags, admin_commands, config_from_args

# What `modelreg admin rewrap` needs: where the blobs are, and the keys.
REWRAP_FIELDS = (
    "data_dir",
    "blob_store",
    "s3_endpoint_url",
    "encryption_keyring",
    "s3_sse",
    "s3_sse_kms_key_id",
)


def register_keyring(sub: Subparsers) -> None:
    keyring = sub.add_parser("keyring", help="key-encryption keys for encryption at rest")
    cmds = keyring.add_subparsers(dest="keyring_command", required=True)
    p = cmds.add_parser("create", help="write a new keyring file (0600) with one primary key")
    p.add_argument("path", type=Path)
    p.set_defaults(func=run_keyring_create)
    p = cmds.add_parser(
        "rotate",
        help="add a new primary key (old keys stay for existing blobs; then run admin rewrap)",
    )
    p.add_argument("path", type=Path)
    p.set_defaults(func=run_keyring_rotate)


def register_admin(sub: Subparsers) -> None:
    cmds = admin_commands(sub)
    p = cmds.add_parser(
        "rewrap",
        help="wrap every blob's data key under the keyring's primary key (content untouched)",
    )
    add_config_flags(p, REWRAP_FIELDS)
    p.add_argument("--dry-run", action="store_true", help="count what would change, change nothing")
    p.set_defaults(func=run_admin_rewrap)


def run_keyring_create(args: argparse.Namespace) -> int:
    from .blobs.encryption.keyring import create_keyring

    try:
        keyring = create_keyring(args.path)
    except FileExistsError:
        print(f"{args.path} exists; rotate it instead of replacing it", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"cannot write {args.path}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"created {args.path} with primary key {keyring.primary_id}")
    return 0


def run_keyring_rotate(args: argparse.Namespace) -> int:
    from .blobs.encryption.keyring import rotate_keyring

    try:
        keyring = rotate_keyring(args.path)
    except (ValueError, OSError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(
        f"primary key is now {keyring.primary_id}; keys: {', '.join(keyring.key_ids)}\n"
        "restart the servers to use it, then run `modelreg admin rewrap`"
    )
    return 0


def run_admin_rewrap(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if config.encryption_keyring is None:
        print("modelreg admin rewrap needs --encryption-keyring", file=sys.stderr)
        return 2
    from .blob_setup import open_configured_blob_store
    from .blobs.encryption.encrypted_store import EncryptedBlobStore
    from .blobs.encryption.rewrap import RewrapReport, rewrap
    from .domain.errors import DomainError

    async def run() -> RewrapReport:
        store = await open_configured_blob_store(config)
        assert isinstance(store, EncryptedBlobStore)
        try:
            return await rewrap(store, dry_run=args.dry_run)
        finally:
            await store.close()

    try:
        report = asyncio.run(run())
    except (ValueError, DomainError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    verb = "would rewrap" if args.dry_run else "rewrapped"
    print(
        f"{verb} {report.rewrapped} blobs; {report.already_primary} already under the"
        f" primary key; {report.gone} deleted meanwhile"
    )
    for key_id, count in sorted(report.unusable.items()):
        print(f"{count} blobs left under key {key_id}, which the keyring cannot use")
    if report.damaged:
        print(f"{report.damaged} blobs have no readable encryption header")
    return 1 if report.unusable or report.damaged else 0
