"""`modelreg serve` and `modelreg db upgrade`: the server's commands.

They join the `modelreg` command through the `modelreg.commands` entry
points (see pyproject.toml), so the SDK never imports the server. Loading
this module must stay cheap and work without the server's dependencies:
the server itself is imported only when a command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from .config import DEFAULTS, FLAG, Flag, ServerConfig

if TYPE_CHECKING:
    from .worker_role import WorkerRole

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

NEEDS_SERVER_EXTRA = "modelreg serve needs the server extra: pip install 'modelreg[server]'"
# The settings `modelreg db upgrade` needs: where the database is.
DB_FIELDS = ("data_dir", "database_url")
# ... and `modelreg admin backup/restore`: the database and the blob store.
STORAGE_FIELDS = (*DB_FIELDS, "blob_store", "s3_endpoint_url")


def _flags(names: Iterable[str] | None = None) -> list[tuple[str, Flag]]:
    """(field name, flag) of the config's fields that have one, in field order."""
    wanted = None if names is None else set(names)
    return [
        (f.name, f.metadata[FLAG])
        for f in dataclasses.fields(ServerConfig)
        if FLAG in f.metadata and (wanted is None or f.name in wanted)
    ]


def add_config_flags(parser: argparse.ArgumentParser, names: Iterable[str] | None = None) -> None:
    """The flags of the config's fields (all of them, or those in `names`),
    with the config's defaults in the flags' units."""
    for name, flag in _flags(names):
        default = getattr(DEFAULTS, name)
        if flag.negate or flag.switch:
            parser.add_argument(flag.name, action="store_true", help=flag.help)
            continue
        if flag.repeat:
            parser.add_argument(
                flag.name, action="append", type=flag.type, metavar=flag.metavar, help=flag.help
            )
            continue
        if isinstance(default, float) and flag.unit != 1.0:
            default = default / flag.unit
        parser.add_argument(
            flag.name,
            default=default,
            type=flag.type,
            choices=flag.choices,
            metavar=flag.metavar,
            help=flag.help,
        )


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """A config from the parsed flags; fields the command has no flag for
    keep their defaults."""
    given = vars(args)
    values: dict[str, Any] = {}
    for name, flag in _flags():
        if flag.dest not in given:
            continue
        value = given[flag.dest]
        if flag.negate:
            value = not value
        elif flag.repeat:
            value = tuple(value or ())
        elif flag.unit != 1.0:
            value = value * flag.unit
        values[name] = value
    return ServerConfig(**values)


def register_serve(sub: Subparsers) -> None:
    serve = sub.add_parser("serve", help="run the registry server")
    add_config_flags(serve)
    serve.set_defaults(func=run_serve)


def register_db(sub: Subparsers) -> None:
    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="upgrade the schema to the latest revision")
    add_config_flags(up, DB_FIELDS)
    up.set_defaults(func=run_db_upgrade)


ADMIN_HELP = "registry administration: storage, keys, backups (admins only)"


def admin_commands(sub: Subparsers) -> Subparsers:
    """The subcommands of `modelreg admin`: one group that the SDK's commands
    (gc) and the server's (backup, restore, rewrap) all add to, whichever
    registers first."""
    admin = sub.choices.get("admin") or sub.add_parser("admin", help=ADMIN_HELP)
    for action in admin._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return admin.add_subparsers(dest="admin_command", required=True, metavar="COMMAND")


def register_admin(sub: Subparsers) -> None:
    admin_sub = admin_commands(sub)
    backup = admin_sub.add_parser(
        "backup",
        help="snapshot the database and copy the blobs it refers to into DEST",
        description="A consistent snapshot of the database plus every blob it refers to,"
        " copied by digest: a second backup into the same DEST copies only new blobs."
        " Safe while the server runs.",
    )
    backup.add_argument("dest", type=Path, metavar="DEST", help="backup directory")
    add_config_flags(backup, STORAGE_FIELDS)
    backup.set_defaults(func=run_admin_backup)
    restore = admin_sub.add_parser(
        "restore",
        help="bring up a registry's database and blobs from a backup",
        description="Into a new database (SQLite file or empty PostgreSQL database,"
        " created if missing) and a blob store; checks the event chain and the blobs.",
    )
    restore.add_argument("source", type=Path, metavar="SOURCE", help="backup directory")
    restore.add_argument("--snapshot", default=None, help="snapshot id (default: the newest)")
    add_config_flags(restore, STORAGE_FIELDS)
    restore.set_defaults(func=run_admin_restore)


def run_admin_backup(args: argparse.Namespace) -> int:
    try:
        from .backup import commands
    except ModuleNotFoundError:  # pragma: no cover - depends on the install
        sys.exit(NEEDS_SERVER_EXTRA)
    return commands.backup(config_from_args(args), args.dest)


def run_admin_restore(args: argparse.Namespace) -> int:
    try:
        from .backup import commands
    except ModuleNotFoundError:  # pragma: no cover - depends on the install
        sys.exit(NEEDS_SERVER_EXTRA)
    return commands.restore(config_from_args(args), args.source, args.snapshot)


def run_serve(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    count = config.resolved_workers()
    if count == 1:
        return run_server(config)
    try:
        from . import logging_setup, workers
    except ModuleNotFoundError:  # pragma: no cover - depends on the install
        sys.exit(NEEDS_SERVER_EXTRA)
    logging_setup.configure(config.log_format, config.log_level)
    try:
        return workers.supervise(config, count)
    except (OSError, ValueError) as exc:
        logging.getLogger("modelreg.server").error("cannot start", extra={"error": str(exc)})
        return 1


def run_server(
    config: ServerConfig,
    role: WorkerRole | None = None,
    on_started: Callable[[], None] | None = None,
) -> int:
    """One server process: alone, or one of several workers (`role`)."""
    try:
        from . import logging_setup, server, telemetry
    except ModuleNotFoundError:  # pragma: no cover - depends on the install
        sys.exit(NEEDS_SERVER_EXTRA)
    logging_setup.configure(config.log_format, config.log_level)
    telemetry.configure(config.telemetry)
    try:
        import uvloop

        run: Callable[[Coroutine[Any, Any, None]], None] = uvloop.run
    except ImportError:  # pragma: no cover
        run = asyncio.run
    try:
        run(server.serve(config, role, on_started))
    except (OSError, ValueError) as exc:
        # Operator mistakes (a taken port, unreadable certificates, contradictory
        # flags) get one log line and exit status 1, not a traceback.
        logging.getLogger("modelreg.server").error("cannot start", extra={"error": str(exc)})
        return 1
    return 0


def run_db_upgrade(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    try:
        from .store import migrate
        from .store.engine import make_engine
    except ModuleNotFoundError:  # pragma: no cover - depends on the install
        sys.exit(NEEDS_SERVER_EXTRA)

    async def upgrade() -> str:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(config.resolved_database_url())
        try:
            await migrate.upgrade(engine)
            return await migrate.current_revision(engine) or ""
        finally:
            await engine.dispose()

    revision = asyncio.run(upgrade())
    print(f"schema at revision {revision}")
    return 0
