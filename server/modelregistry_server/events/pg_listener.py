"""LISTEN for other replicas' commits on PostgreSQL.

Every append queues `pg_notify('modelreg_events', revision)`, delivered when
its transaction commits. One dedicated connection per process listens and
wakes the hub; the payload is not trusted for anything (the hub reads the
table). A dropped connection is reopened with backoff, and the hub is woken
after each (re)connect since notifications sent meanwhile are lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy.engine import make_url

from ..store.event_log import NOTIFY_CHANNEL

log = logging.getLogger("modelreg.watch")
MAX_BACKOFF_S = 5.0


def libpq_url(database_url: str) -> str:
    """The SQLAlchemy URL as psycopg takes it (no `+driver`)."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


async def listen_forever(database_url: str, on_notify: Callable[[], None]) -> None:
    """Call `on_notify` for every notification, reconnecting as needed."""
    import psycopg  # only a server on PostgreSQL listens, and pays for the driver

    conninfo = libpq_url(database_url)
    delay = 0.2
    failing = False
    while True:
        try:
            conn = await psycopg.AsyncConnection.connect(
                conninfo,
                autocommit=True,
                connect_timeout=5,
                keepalives=1,
                keepalives_idle=10,
                keepalives_interval=5,
                keepalives_count=3,
            )
            async with conn:
                await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                if failing:
                    log.info("listening for event notifications again")
                failing, delay = False, 0.2
                on_notify()
                async for _ in conn.notifies():
                    on_notify()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not failing:
                log.warning(
                    "event notification connection lost; the poll covers meanwhile",
                    extra={"error": type(exc).__name__, "retry_in_s": delay},
                )
            failing = True
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_BACKOFF_S)
