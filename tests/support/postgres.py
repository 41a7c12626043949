"""Throwaway PostgreSQL databases on the test server (or any server given by URL).

The server comes from MODELREG_TEST_PG_HOST, _PORT and _USER (default
postgres@127.0.0.1:5432, trust authentication), for the tests and the load
tests alike.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

from sqlalchemy.engine import make_url

PG_HOST = os.environ.get("MODELREG_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("MODELREG_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("MODELREG_TEST_PG_USER", "postgres")
# The server, as a URL without a database: `modelreg serve --database-url`
# takes it with a database name appended.
PG_SERVER = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}"


def libpq_dsn(url: str, database: str | None = None) -> str:
    """A SQLAlchemy URL (any driver) as psycopg connects to it: libpq's
    key=value form, optionally for another database on the same server."""
    parsed = make_url(url)
    dsn = f"host={parsed.host} port={parsed.port or 5432} user={parsed.username}"
    if parsed.password:
        dsn += f" password={parsed.password}"
    return f"{dsn} dbname={database or parsed.database}"


@contextlib.contextmanager
def fresh_database(server: str = PG_SERVER, prefix: str = "modelreg_test") -> Iterator[str]:
    """A new, empty database on `server` (a URL without a database, of any
    driver); yields its URL in the same form and drops it afterwards, with
    whatever sessions are still connected."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = libpq_dsn(server, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{server.rstrip('/')}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
