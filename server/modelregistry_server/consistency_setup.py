"""What every server knows it has applied, and read replicas when configured.

The applied revision learns of every revision this server commits (each SQL
store's commit hook) and, wired in server.py, every event its watch hub
reads from the log; reads are never answered from a state older than it
(see store/read_routing.py).
"""

from __future__ import annotations

from .config import ServerConfig
from .domain.read_consistency import AppliedRevision
from .store.engine import is_sqlite, make_engine
from .store.read_routing import ReadRouter
from .store.sqlalchemy_store import SqlRegistryStore
from .store.transactions import SqlBase

# A replica that does not answer within this many seconds counts as down.
REPLICA_CONNECT_TIMEOUT_S = 1


def build(
    config: ServerConfig,
    store: SqlRegistryStore,
    writers: list[SqlBase],
    applied: AppliedRevision,
) -> ReadRouter | None:
    for writer in writers:
        writer.on_revision_committed(applied.advance)
    if not config.read_database_urls:
        return None
    if is_sqlite(config.resolved_database_url()):
        raise ValueError("--read-database-url needs a PostgreSQL --database-url")
    for url in config.read_database_urls:
        if is_sqlite(url):
            raise ValueError("--read-database-url takes PostgreSQL streaming replicas only")
    replicas = [
        make_engine(
            url, config.db_pool_size, connect_timeout=REPLICA_CONNECT_TIMEOUT_S, pre_ping=True
        )
        for url in config.read_database_urls
    ]
    router = ReadRouter(store.engine, replicas, applied, config.read_replica_wait_s)
    store.route_reads(router)
    return router
