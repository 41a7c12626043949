"""Server configuration, filled from `modelreg serve` flags."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_LISTEN = "127.0.0.1:50051"
DEFAULT_DATA_DIR = "./modelreg-data"
# Room for a 4 MiB artifact chunk plus its envelope.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class ServerConfig:
    listen: str = DEFAULT_LISTEN
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    # Empty: SQLite at <data_dir>/registry.db.
    database_url: str = ""
    # Empty: a local directory at <data_dir>/blobs. Or s3://bucket/prefix.
    blob_store: str = ""
    # S3-compatible endpoint; empty: the AWS default for the region.
    s3_endpoint_url: str = ""
    # An upload with no progress for this long expires and is reclaimed.
    upload_ttl_s: float = 24 * 3600
    # Events older than this are compacted away (0: keep everything). Events
    # a queue relay has not published yet are always kept.
    event_retention_s: float = 0.0
    migrate: bool = True
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Set: clients must present a certificate signed by this CA (mutual TLS).
    tls_client_ca: Path | None = None
    # Seconds in-flight RPCs get to finish on SIGTERM.
    shutdown_grace: float = 15.0
    # Seconds between database checks once ready (health follows the result).
    health_interval: float = 2.0
    # none | console | otlp (OTLP/gRPC, endpoint from OTEL_EXPORTER_OTLP_ENDPOINT).
    telemetry: str = "none"
    log_format: str = "json"
    log_level: str = "INFO"
    db_pool_size: int = 20
    # Seconds a cached GetModel/GetModelVersion/GetAlias/ResolveAlias may be
    # served (invalidated at once by local writes, and by other replicas'
    # writes as soon as the event log shows them); 0 disables the cache.
    read_cache_s: float = 30.0
    # Set (nats://host:port): publish every event to this JetStream stream.
    events_nats: str = ""
    events_nats_stream: str = "MODELREG_EVENTS"
    events_nats_subject_prefix: str = "modelreg.events"
    # Seconds between progress messages on an idle Watch stream.
    watch_progress_interval: float = 5.0
    # Seconds between reads of the event log when nothing signalled a commit
    # (a safety net: commits here and NOTIFY from other replicas wake it at once).
    watch_poll_interval: float = 1.0
    # Set (HOST:PORT): serve /metrics (Prometheus), /healthz and /readyz over HTTP.
    metrics_listen: str = ""

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'registry.db').resolve()}"

    def resolved_blob_store(self) -> str:
        if self.blob_store:
            return self.blob_store
        return f"file://{(self.data_dir / 'blobs').resolve()}"
