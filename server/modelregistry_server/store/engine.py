"""Engine construction: URL normalisation and per-dialect connection setup."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

WRITE_OPTION = "modelreg_write"
# A pooled connection idle this long is tested before use: a database that
# restarted meanwhile left it dead, and the first call after the blip
# should not fail where a fresh connection would succeed. Connections in
# steady use are not tested (a round trip per transaction would cost about
# a millisecond); one that breaks under use invalidates the whole pool.
IDLE_CHECK_S = 0.5


def normalize_url(url: str) -> str:
    """Pick the async driver for a plain `postgresql://` or `sqlite://` URL."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql" and parsed.drivername != "postgresql+psycopg":
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend == "sqlite" and parsed.drivername != "sqlite+aiosqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif backend not in ("postgresql", "sqlite"):
        raise ValueError(f"unsupported database {backend!r}: use postgresql:// or sqlite://")
    return parsed.render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def make_engine(
    url: str, pool_size: int = 20, connect_timeout: int = 5, pre_ping: bool = False
) -> AsyncEngine:
    """`pre_ping` tests every connection at checkout (for read replicas: a
    replica that died fails there, where the read can still go elsewhere)."""
    url = normalize_url(url)
    if is_sqlite(url):
        engine = create_async_engine(url)
        _configure_sqlite(engine)
        return engine
    engine = create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=5,
        connect_args={"connect_timeout": connect_timeout},
        pool_pre_ping=pre_ping,
    )
    _check_idle_connections(engine)
    return engine


def _check_idle_connections(engine: AsyncEngine) -> None:
    """Test a connection at checkout if it sat in the pool over `IDLE_CHECK_S`."""

    @event.listens_for(engine.sync_engine, "checkin")
    def _checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop("idle_since", None)
        if since is None or time.monotonic() - since < IDLE_CHECK_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)  # what pool_pre_ping does, every time
        except Exception as error:
            # The pool discards it and checks out another (a new one if need be).
            raise exc.DisconnectionError("idle connection is gone") from error


def _configure_sqlite(engine: AsyncEngine) -> None:
    """WAL, foreign keys, a busy timeout, and BEGIN IMMEDIATE for writes.

    pysqlite's own transaction handling is turned off so that a write
    transaction takes the write lock at BEGIN: two writers then queue on the
    busy timeout instead of failing when a read lock cannot be upgraded.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
