"""One way to open a transaction, for every SQL store.

SQLite write transactions take the write lock at BEGIN; database errors
that mean "unreachable" become a retryable domain error; each transaction is
a client span named after the store operation (a no-op span unless an
exporter is configured); write transactions run commit hooks once they have
committed (to wake local watchers at once).
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from modelregistry.v1.error_reasons import ErrorReason
from opentelemetry import trace
from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..domain import errors, read_consistency
from .engine import WRITE_OPTION

if TYPE_CHECKING:
    from .read_routing import ReadRouter

_tracer = trace.get_tracer("modelreg.store")


def now_us() -> int:
    """Times in the store are microseconds since the epoch."""
    return time.time_ns() // 1000


# Models whose events the current write transaction appended (see event_log).
_touched: contextvars.ContextVar[set[str] | None] = contextvars.ContextVar(
    "modelreg_touched_models", default=None
)


def touch(model: str) -> None:
    """Note that the running write transaction changed `model`."""
    touched = _touched.get()
    if touched is not None:
        touched.add(model)


# The newest revision the current write transaction appended (see event_log).
_appended: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "modelreg_appended_revision", default=None
)


def appended(revision: int) -> None:
    """Note that the running write transaction appended event `revision`;
    the call's answer reflects it."""
    newest = _appended.get()
    if newest is not None:
        newest.append(revision)
    read_consistency.note(revision)


def dialect_insert(conn: AsyncConnection, table: Table) -> Any:
    """An INSERT with the dialect's ON CONFLICT clauses (PostgreSQL and SQLite
    spell them the same way, through different classes)."""
    return insert_for(conn.dialect.name, table)


def insert_for(dialect: str, table: Table) -> Any:
    """`dialect_insert` by the dialect's name, for a statement built once."""
    return (postgresql if dialect == "postgresql" else sqlite).insert(table)


def _failed(span: trace.Span, exc: BaseException) -> None:
    if span.is_recording():
        span.record_exception(exc)
        span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))


class SqlBase:
    """What every SQL store shares: the engine, transactions, commit hooks."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name
        self._commit_hooks: list[Callable[[], None]] = []
        self._model_hooks: list[Callable[[frozenset[str]], None]] = []
        self._revision_hooks: list[Callable[[int], None]] = []
        self._reads: ReadRouter | None = None

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    def on_commit(self, hook: Callable[[], None]) -> None:
        """Call `hook` after every committed write transaction of this store."""
        self._commit_hooks.append(hook)

    def on_models_committed(self, hook: Callable[[frozenset[str]], None]) -> None:
        """Call `hook` with the models a write transaction changed, once it
        has committed (before the write's caller sees the result)."""
        self._model_hooks.append(hook)

    def on_revision_committed(self, hook: Callable[[int], None]) -> None:
        """Call `hook` with the newest event revision a write transaction
        appended, once it has committed."""
        self._revision_hooks.append(hook)

    @property
    def read_router(self) -> ReadRouter | None:
        return self._reads

    def route_reads(self, router: ReadRouter) -> None:
        """Run this store's read transactions where `router` says (replicas)."""
        self._reads = router

    @asynccontextmanager
    async def _tx(self, op: str, write: bool = False) -> AsyncIterator[AsyncConnection]:
        touched: set[str] = set()
        revisions: list[int] = []
        token = _touched.set(touched) if write else None
        appended_token = _appended.set(revisions) if write else None
        try:
            async with self._traced_tx(op, write) as conn:
                yield conn
        finally:
            if token is not None:
                _touched.reset(token)
            if appended_token is not None:
                _appended.reset(appended_token)
        if revisions:
            for revision_hook in self._revision_hooks:
                revision_hook(max(revisions))
        if write:
            for hook in self._commit_hooks:
                hook()
            if touched:
                models = frozenset(touched)
                for model_hook in self._model_hooks:
                    model_hook(models)

    @asynccontextmanager
    async def _traced_tx(self, op: str, write: bool) -> AsyncIterator[AsyncConnection]:
        with _tracer.start_as_current_span(
            f"store.{op}",
            kind=trace.SpanKind.CLIENT,
            attributes={"db.system": self._dialect, "db.operation.name": op},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                reads = None if write else self._reads
                connect = reads.connect() if reads is not None else self._engine.connect()
                async with connect as conn:
                    if not write and self._dialect == "postgresql":
                        # Reads run in autocommit: no BEGIN/COMMIT round trips.
                        # Each statement still sees one consistent snapshot,
                        # which is all a READ COMMITTED transaction gave them.
                        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                        yield conn
                        return
                    if write and self._dialect == "sqlite":
                        conn = await conn.execution_options(**{WRITE_OPTION: True})
                    async with conn.begin():
                        yield conn
            except errors.DomainError:
                raise
            except (OperationalError, PoolTimeout, OSError) as exc:
                _failed(span, exc)
                raise errors.Unavailable(
                    ErrorReason.STORAGE_UNAVAILABLE,
                    "the database is unavailable; retry with backoff",
                ) from exc
            except DBAPIError as exc:
                _failed(span, exc)
                if exc.connection_invalidated:
                    raise errors.Unavailable(
                        ErrorReason.STORAGE_UNAVAILABLE, "the database connection was lost; retry"
                    ) from exc
                raise
            except Exception as exc:
                _failed(span, exc)
                raise
