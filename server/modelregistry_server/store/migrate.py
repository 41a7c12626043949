"""Schema migrations (Alembic), run programmatically on an async engine.

Alembic (with Mako and Pygments, some 11 MB of resident memory) is imported
only when the schema must be created or upgraded. Whether it must is read
without it: the stored revision is a plain query of `alembic_version`, and
the newest revision is read from the migration scripts' `revision` and
`down_revision` lines.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version"  # Alembic's default, which env.py keeps
# Any constant: replicas starting together take turns at upgrading.
_ADVISORY_LOCK_KEY = 0x6D6F64656C726567
_REVISION = re.compile(r"^revision\s*=\s*['\"]([^'\"]+)['\"]", re.MULTILINE)
_DOWN_REVISION = re.compile(r"^down_revision\s*=\s*(.*)$", re.MULTILINE)
_QUOTED = re.compile(r"['\"]([^'\"]+)['\"]")


def _config(connection: Any) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _scripts_head() -> str | None:
    """The one revision no script revises, read from the scripts' text; None
    when that is not a single one (Alembic then decides)."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for script in (MIGRATIONS / "versions").glob("*.py"):
        source = script.read_text(encoding="utf-8")
        revision = _REVISION.search(source)
        if revision is None:
            continue
        revisions.add(revision.group(1))
        down = _DOWN_REVISION.search(source)
        if down is not None:
            revised.update(_QUOTED.findall(down.group(1)))
    heads = revisions - revised
    return heads.pop() if len(heads) == 1 else None


@cache
def head_revision() -> str:
    """The newest revision of the migration scripts: the schema this build needs."""
    head = _scripts_head()
    if head is not None:
        return head
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config(None)).get_current_head()
    assert head is not None
    return head


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Upgrade the schema to `revision`; nothing to do (and Alembic not even
    imported) when the database is already at the newest one."""
    if revision in ("head", head_revision()):
        async with engine.connect() as conn:
            if await conn.run_sync(_stored_revisions) == [head_revision()]:
                return
    from alembic import command

    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_LOCK_KEY})
        await conn.run_sync(lambda sync_conn: command.upgrade(_config(sync_conn), revision))


def _stored_revisions(sync_conn: Any) -> list[str]:
    """The revisions `alembic_version` holds: none before the first upgrade."""
    if not inspect(sync_conn).has_table(VERSION_TABLE):
        return []
    rows = sync_conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars()
    return sorted(str(row) for row in rows)


async def current_revision(engine: AsyncEngine) -> str | None:
    """The schema revision the database records (None: no schema yet)."""
    async with engine.connect() as conn:
        revisions = await conn.run_sync(_stored_revisions)
    if len(revisions) > 1:
        raise RuntimeError(f"the database records several schema revisions: {revisions}")
    return revisions[0] if revisions else None
