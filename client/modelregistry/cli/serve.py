"""`modelreg serve` and `modelreg db upgrade`: the server side of the CLI.

Imports the server package lazily so the client-only install stays small.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser("serve", help="run the registry server")
    serve.add_argument(
        "--listen", default="127.0.0.1:50051", help="HOST:PORT (default %(default)s)"
    )
    serve.add_argument(
        "--data-dir", default="./modelreg-data", help="for the embedded database and blobs"
    )
    serve.add_argument(
        "--database-url",
        default="",
        help="postgresql://user@host:port/db or sqlite:///path (default: SQLite in --data-dir)",
    )
    serve.add_argument(
        "--blob-store", default="", help="file:///dir or s3://bucket/prefix (default: --data-dir)"
    )
    serve.add_argument(
        "--s3-endpoint-url",
        default="",
        help="S3-compatible endpoint for an s3:// blob store (default: AWS for the region)",
    )
    serve.add_argument(
        "--upload-ttl-hours",
        type=float,
        default=24.0,
        help="an upload with no progress for this long expires (default %(default)s)",
    )
    serve.add_argument(
        "--event-retention-days",
        type=float,
        default=0.0,
        help="drop events older than this from the log; 0 keeps everything (the default)",
    )
    serve.add_argument(
        "--read-cache-seconds",
        type=float,
        default=30.0,
        help="serve hot reads from memory this long at most; writes on this replica drop "
        "them at once, other replicas' writes as their events arrive; 0 disables",
    )
    serve.add_argument(
        "--no-migrate", action="store_true", help="do not upgrade the schema at start-up"
    )
    serve.add_argument("--tls-cert", type=Path, help="server certificate (PEM)")
    serve.add_argument("--tls-key", type=Path, help="server private key (PEM)")
    serve.add_argument(
        "--tls-client-ca", type=Path, help="CA (PEM) that client certificates must chain to"
    )
    serve.add_argument(
        "--shutdown-grace", type=float, default=15.0, help="seconds to drain on SIGTERM"
    )
    serve.add_argument(
        "--telemetry", choices=("none", "console", "otlp"), default="none", help="OpenTelemetry"
    )
    serve.add_argument(
        "--events-nats",
        default="",
        metavar="URL",
        help="publish every event to NATS JetStream at this URL, e.g. nats://127.0.0.1:4222",
    )
    serve.add_argument(
        "--events-nats-stream", default="MODELREG_EVENTS", help="JetStream stream (%(default)s)"
    )
    serve.add_argument(
        "--events-nats-subject-prefix",
        default="modelreg.events",
        help="subjects are PREFIX.<model>.<EVENT_TYPE> (default %(default)s)",
    )
    serve.add_argument(
        "--watch-progress-interval",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="progress message on an idle Watch stream this often (default %(default)s)",
    )
    serve.add_argument(
        "--watch-poll-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="read the event log this often even without a commit signal (default %(default)s)",
    )
    serve.add_argument(
        "--metrics-listen",
        default="",
        metavar="HOST:PORT",
        help="serve /metrics (Prometheus), /healthz and /readyz over HTTP here (default: off)",
    )
    serve.add_argument("--log-format", choices=("json", "text"), default="json")
    serve.add_argument("--log-level", default="INFO")
    serve.set_defaults(func=run_serve)

    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="upgrade the schema to the latest revision")
    up.add_argument("--database-url", default="", help="as for serve")
    up.add_argument("--data-dir", default="./modelreg-data")
    up.set_defaults(func=run_db_upgrade)


def _config(args: argparse.Namespace) -> object:
    try:
        from modelregistry_server.config import ServerConfig
    except ImportError:  # pragma: no cover - depends on the install
        sys.exit("modelreg serve needs the server extra: pip install 'modelreg[server]'")
    return ServerConfig(
        listen=getattr(args, "listen", "127.0.0.1:50051"),
        data_dir=Path(args.data_dir),
        database_url=args.database_url,
        blob_store=getattr(args, "blob_store", ""),
        s3_endpoint_url=getattr(args, "s3_endpoint_url", ""),
        upload_ttl_s=getattr(args, "upload_ttl_hours", 24.0) * 3600,
        event_retention_s=getattr(args, "event_retention_days", 0.0) * 86400,
        read_cache_s=getattr(args, "read_cache_seconds", 30.0),
        migrate=not getattr(args, "no_migrate", False),
        tls_cert=getattr(args, "tls_cert", None),
        tls_key=getattr(args, "tls_key", None),
        tls_client_ca=getattr(args, "tls_client_ca", None),
        shutdown_grace=getattr(args, "shutdown_grace", 15.0),
        telemetry=getattr(args, "telemetry", "none"),
        log_format=getattr(args, "log_format", "json"),
        log_level=getattr(args, "log_level", "INFO"),
        events_nats=getattr(args, "events_nats", ""),
        events_nats_stream=getattr(args, "events_nats_stream", "MODELREG_EVENTS"),
        events_nats_subject_prefix=getattr(args, "events_nats_subject_prefix", "modelreg.events"),
        watch_progress_interval=getattr(args, "watch_progress_interval", 5.0),
        watch_poll_interval=getattr(args, "watch_poll_interval", 1.0),
        metrics_listen=getattr(args, "metrics_listen", ""),
    )


def run_serve(args: argparse.Namespace) -> int:
    from modelregistry_server import logging_setup, server, telemetry
    from modelregistry_server.config import ServerConfig

    config = _config(args)
    assert isinstance(config, ServerConfig)
    logging_setup.configure(config.log_format, config.log_level)
    telemetry.configure(config.telemetry)
    try:
        import uvloop

        run: Callable[[Coroutine[Any, Any, None]], None] = uvloop.run
    except ImportError:  # pragma: no cover
        run = asyncio.run
    try:
        run(server.serve(config))
    except (OSError, ValueError) as exc:
        # Operator mistakes (a taken port, unreadable certificates, contradictory
        # flags) get one log line and exit status 1, not a traceback.
        logging.getLogger("modelreg.server").error("cannot start", extra={"error": str(exc)})
        return 1
    return 0


def run_db_upgrade(args: argparse.Namespace) -> int:
    from modelregistry_server.config import ServerConfig
    from modelregistry_server.store import migrate
    from modelregistry_server.store.engine import make_engine

    config = _config(args)
    assert isinstance(config, ServerConfig)

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
