"""One way to open a transaction: SQLite write locks, and errors that mean
"the database is unreachable" turned into a retryable domain error."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..domain import errors
from .engine import WRITE_OPTION


@asynccontextmanager
async def transaction(engine: AsyncEngine, write: bool = False) -> AsyncIterator[AsyncConnection]:
    try:
        async with engine.connect() as conn:
            if write and engine.dialect.name == "sqlite":
                conn = await conn.execution_options(**{WRITE_OPTION: True})
            async with conn.begin():
                yield conn
    except (OperationalError, PoolTimeout, OSError) as exc:
        raise errors.Unavailable(
            "STORAGE_UNAVAILABLE", "the database is unavailable; retry with backoff"
        ) from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise errors.Unavailable(
                "STORAGE_UNAVAILABLE", "the database connection was lost; retry"
            ) from exc
        raise
