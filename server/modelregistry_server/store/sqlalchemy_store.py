"""The registry store on SQLAlchemy Core: PostgreSQL in production, SQLite embedded.

Conditional writes are conditional UPDATEs (`WHERE id = ? AND row_version = ?`),
never read-modify-write in Python. Version numbers come from a counter on the
model row, incremented under that row's lock, so concurrent creates never
collide and numbers are never reused. Every write appends its event to the
log in the same transaction (see event_log.py).

The queries live in one module per resource: models_sql, versions_sql,
aliases_sql, rollouts_sql, each class building on the previous one.
"""

from __future__ import annotations

from sqlalchemy import select

from .rollouts_sql import RolloutQueries


class SqlRegistryStore(RolloutQueries):
    async def ping(self) -> None:
        """Raise unless the database answers. Not traced: health calls it every
        few seconds, and a root span each time would drown real traces."""
        async with self._engine.connect() as conn:
            await conn.execute(select(1))

    async def close(self) -> None:
        await self._engine.dispose()
