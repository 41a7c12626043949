"""PostgreSQL snapshots: pg_dump inside a repeatable-read snapshot.

The backup opens a REPEATABLE READ, READ ONLY transaction, exports its
snapshot, reads the event head and the referenced blobs in it, and runs
`pg_dump --snapshot` on the same snapshot: the dump, the head and the blob
list describe one instant, whatever commits meanwhile. Restores go through
`pg_restore` into an empty database (created if missing) in one transaction.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url

from ..store.engine import make_engine
from .layout import BackupError
from .snapshot_sql import SnapshotFacts, snapshot_facts


def tool(name: str) -> str:
    found = shutil.which(name) or next(
        (str(p) for p in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)),
        None,
    )
    if found is None:
        raise BackupError(f"{name} not found: install PostgreSQL's client tools")
    return found


def libpq(url: str, database: str | None = None) -> tuple[str, dict[str, str]]:
    """A libpq connection string for `url` (any driver), and the environment
    that carries its password (kept off the command line)."""
    parsed: URL = make_url(url)
    parts = {
        "host": parsed.host or "",
        "port": str(parsed.port or ""),
        "user": parsed.username or "",
        "dbname": database or parsed.database or "",
        **{k: str(v) for k, v in parsed.query.items()},
    }
    conninfo = make_conninfo(**{k: v for k, v in parts.items() if v})
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    return conninfo, env


async def _run(*args: str, env: dict[str, str]) -> None:
    proc = await asyncio.create_subprocess_exec(
        *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        tail = err.decode(errors="replace").strip()[-2000:]
        raise BackupError(f"{Path(args[0]).name} failed ({proc.returncode}): {tail}")


async def dump(url: str, target: Path) -> SnapshotFacts:
    engine = make_engine(url, pool_size=1)
    conninfo, env = libpq(url)
    try:
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                await conn.execute(text("SET TRANSACTION READ ONLY"))
                snapshot = (await conn.execute(text("SELECT pg_export_snapshot()"))).scalar()
                facts = await snapshot_facts(conn)
                await _run(
                    tool("pg_dump"), "--format=custom", f"--snapshot={snapshot}",
                    f"--file={target}", f"--dbname={conninfo}", env=env,
                )  # fmt: skip
    finally:
        await engine.dispose()
    with target.open("rb") as f:
        os.fsync(f.fileno())
    return facts


def _prepare(url: str) -> None:
    """Create the target database if it is missing; refuse one that has tables."""
    name = make_url(url).database
    if not name:
        raise BackupError(f"{url}: name the database to restore into")
    password = make_url(url).password
    extra = {"password": str(password)} if password else {}
    admin = make_conninfo(libpq(url, "postgres")[0], **extra)
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            return
    target = make_conninfo(libpq(url)[0], **extra)
    with psycopg.connect(target, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
        if row is not None and row[0] > 0:
            raise BackupError(f"database {name} is not empty: restore into a new database")


async def restore(source: Path, url: str) -> None:
    await asyncio.to_thread(_prepare, url)
    conninfo, env = libpq(url)
    await _run(
        tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error",
        "--single-transaction", f"--dbname={conninfo}", str(source), env=env,
    )  # fmt: skip
