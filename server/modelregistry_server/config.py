"""Server configuration: every setting and its default, defined once.

`modelreg serve` derives its flags from the `Flag` on each field (see
cli.py), other settings objects take their defaults from here, and tests
build a `ServerConfig` directly. A field without a flag is tuned in code only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Room for a 4 MiB artifact chunk plus its envelope.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024

FLAG = "flag"  # the metadata key of a field's Flag
HOUR_S = 3600.0
DAY_S = 24 * HOUR_S


@dataclass(frozen=True)
class Flag:
    """How a field is set on the command line.

    `unit` converts the flag's value to the field's (`--upload-ttl-hours`
    sets seconds); a `negate` flag takes no value and turns a true field off,
    a `switch` takes no value and turns a false field on; a `repeat` flag
    may be given several times and fills a tuple.
    """

    name: str
    help: str | None = None
    type: Callable[[str], Any] = str
    unit: float = 1.0
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    negate: bool = False
    switch: bool = False
    repeat: bool = False

    @property
    def dest(self) -> str:
        """Where argparse puts the value: `--upload-ttl-hours` -> `upload_ttl_hours`."""
        return self.name.removeprefix("--").replace("-", "_")


def flag(
    name: str,
    help: str | None = None,
    type: Callable[[str], Any] = str,
    *,
    unit: float = 1.0,
    choices: tuple[str, ...] | None = None,
    metavar: str | None = None,
    negate: bool = False,
    switch: bool = False,
    repeat: bool = False,
) -> dict[str, Flag]:
    """Field metadata: the field is set by this command-line flag."""
    return {FLAG: Flag(name, help, type, unit, choices, metavar, negate, switch, repeat)}


@dataclass(frozen=True)
class ServerConfig:
    listen: str = field(
        default="127.0.0.1:50051", metadata=flag("--listen", "HOST:PORT (default %(default)s)")
    )
    data_dir: Path = field(
        default=Path("./modelreg-data"),
        metadata=flag("--data-dir", "for the embedded database and blobs", Path),
    )
    # Empty: SQLite at <data_dir>/registry.db.
    database_url: str = field(
        default="",
        metadata=flag(
            "--database-url",
            "postgresql://user@host:port/db or sqlite:///path (default: SQLite in --data-dir)",
        ),
    )
    # Empty: a local directory at <data_dir>/blobs. Or s3://bucket/prefix.
    blob_store: str = field(
        default="",
        metadata=flag("--blob-store", "file:///dir or s3://bucket/prefix (default: --data-dir)"),
    )
    # PostgreSQL streaming replicas of the database, for read transactions.
    read_database_urls: tuple[str, ...] = field(
        default=(),
        metadata=flag(
            "--read-database-url",
            "a PostgreSQL streaming replica of --database-url: registry reads run there when it "
            "has applied what this server has seen (else on the primary); repeat for several",
            metavar="URL",
            repeat=True,
        ),
    )
    # How long a read waits for a lagging replica before it runs on the primary.
    read_replica_wait_s: float = field(
        default=0.02,
        metadata=flag(
            "--read-replica-wait-ms",
            "a read waits this long for a lagging replica, then runs on the primary "
            "(default %(default)s)",
            float,
            unit=0.001,
        ),
    )
    # S3-compatible endpoint; empty: the AWS default for the region.
    s3_endpoint_url: str = field(
        default="",
        metadata=flag(
            "--s3-endpoint-url",
            "S3-compatible endpoint for an s3:// blob store (default: AWS for the region)",
        ),
    )
    # Set: blobs and their staging are encrypted at rest, their data keys
    # wrapped by this keyring's keys (see blobs/encryption).
    encryption_keyring: Path | None = field(
        default=None,
        metadata=flag(
            "--encryption-keyring",
            "keyring file (mode 0600, `modelreg keyring create`): encrypt blobs at rest",
            Path,
        ),
    )
    # S3 server-side encryption on top of the registry's own: AES256 or aws:kms.
    s3_sse: str = field(
        default="",
        metadata=flag(
            "--s3-sse", "S3 server-side encryption for an s3:// store: AES256 or aws:kms"
        ),
    )
    s3_sse_kms_key_id: str = field(
        default="",
        metadata=flag(
            "--s3-sse-kms-key-id", "KMS key for --s3-sse aws:kms (default: the bucket's)"
        ),
    )
    # An upload with no progress for this long expires and is reclaimed.
    upload_ttl_s: float = field(
        default=24 * HOUR_S,
        metadata=flag(
            "--upload-ttl-hours",
            "an upload with no progress for this long expires (default %(default)s)",
            float,
            unit=HOUR_S,
        ),
    )
    # Garbage collection (service/gc.py): unreferenced blobs younger than the
    # grace are kept; a finished blob upload is leased to its manifest for
    # the upload TTL. On by default: a registry that never deletes fills its
    # disk, and a sweep is safe while serving. 0 turns the periodic run off.
    gc_interval_s: float = field(
        default=6 * HOUR_S,
        metadata=flag(
            "--gc-interval-hours",
            "collect unreferenced blobs this often; 0: never (default %(default)s)",
            float,
            unit=HOUR_S,
        ),
    )
    gc_grace_s: float = field(
        default=24 * HOUR_S,
        metadata=flag(
            "--gc-grace-hours",
            "keep unreferenced blobs younger than this; at least 1 minute (default %(default)s)",
            float,
            unit=HOUR_S,
        ),
    )
    # Quotas (service/quotas.py): a model's unique stored bytes plus its open
    # uploads; 0 is unlimited. Models may set their own.
    default_model_quota_bytes: int = field(
        default=0,
        metadata=flag(
            "--default-model-quota-gib",
            "storage quota of a model without its own, GiB; 0: unlimited (default %(default)s)",
            float,
            unit=1024**3,
        ),
    )
    max_open_uploads_per_principal: int = field(
        default=32,
        metadata=flag(
            "--max-open-uploads-per-principal",
            "unfinished, unexpired uploads one caller may have (default %(default)s)",
            int,
        ),
    )
    # Streams past these get RESOURCE_EXHAUSTED (TOO_MANY_TRANSFERS) with a
    # retry delay; see service/transfers.py.
    max_downloads: int = field(
        default=512,
        metadata=flag("--max-downloads", "concurrent Download streams (default %(default)s)", int),
    )
    # Lower than downloads: a stalled upload stream holds megabytes inside
    # gRPC's transport, and uploads come from a few pipelines, not a fleet.
    max_uploads: int = field(
        default=64,
        metadata=flag("--max-uploads", "concurrent Upload streams (default %(default)s)", int),
    )
    # An upload stream that sends nothing for this long is ended (ABORTED,
    # UPLOAD_IDLE), so a client gone quiet stops holding an upload slot and
    # the megabytes gRPC buffers for its stream; what it sent stays resumable.
    upload_idle_timeout_s: float = field(
        default=60.0,
        metadata=flag(
            "--upload-idle-timeout",
            "seconds an upload stream may send nothing before it is ended (default "
            "%(default)s; 0: never)",
            float,
        ),
    )
    # Chunk bytes that downloads past their first small chunks may hold in
    # flight, all streams together; memory is a small multiple of it.
    download_buffer_mib: int = field(
        default=32,
        metadata=flag(
            "--download-buffer-mib",
            "large download chunks in flight, all streams together (default %(default)s)",
            int,
        ),
    )
    # Set: every `checkpoint_interval_s` the server signs the log's head with
    # this ed25519 key (PEM, PKCS#8) and appends it as a CHECKPOINT event.
    checkpoint_key: Path | None = field(
        default=None,
        metadata=flag(
            "--checkpoint-key",
            "ed25519 private key (PEM) to sign checkpoints of the event log with",
            Path,
        ),
    )
    checkpoint_interval_s: float = field(
        default=300.0,
        metadata=flag(
            "--checkpoint-interval-seconds",
            "sign the event log's head this often when it has grown (default %(default)s)",
            float,
        ),
    )
    # Events older than this are compacted away (0: keep everything). Events
    # a queue relay has not published yet are always kept.
    event_retention_s: float = field(
        default=0.0,
        metadata=flag(
            "--event-retention-days",
            "drop events older than this from the log; 0 keeps everything (the default)",
            float,
            unit=DAY_S,
        ),
    )
    # Seconds a cached GetModel/GetModelVersion/GetAlias/ResolveAlias may be
    # served (invalidated at once by local writes, and by other replicas'
    # writes as soon as the event log shows them); 0 disables the cache.
    read_cache_s: float = field(
        default=30.0,
        metadata=flag(
            "--read-cache-seconds",
            "serve hot reads from memory this long at most; writes on this replica drop "
            "them at once, other replicas' writes as their events arrive; 0 disables",
            float,
        ),
    )
    migrate: bool = field(
        default=True,
        metadata=flag("--no-migrate", "do not upgrade the schema at start-up", negate=True),
    )
    tls_cert: Path | None = field(
        default=None, metadata=flag("--tls-cert", "server certificate (PEM)", Path)
    )
    tls_key: Path | None = field(
        default=None, metadata=flag("--tls-key", "server private key (PEM)", Path)
    )
    # Set: clients must present a certificate signed by this CA (mutual TLS).
    tls_client_ca: Path | None = field(
        default=None,
        metadata=flag("--tls-client-ca", "CA (PEM) that client certificates must chain to", Path),
    )
    # Seconds in-flight RPCs get to finish on SIGTERM.
    shutdown_grace: float = field(
        default=15.0, metadata=flag("--shutdown-grace", "seconds to drain on SIGTERM", float)
    )
    # OTLP exports over gRPC to OTEL_EXPORTER_OTLP_ENDPOINT.
    telemetry: str = field(
        default="none",
        metadata=flag("--telemetry", "OpenTelemetry", choices=("none", "console", "otlp")),
    )
    # Set (nats://host:port): publish every event to this JetStream stream.
    events_nats: str = field(
        default="",
        metadata=flag(
            "--events-nats",
            "publish every event to NATS JetStream at this URL, e.g. nats://127.0.0.1:4222",
            metavar="URL",
        ),
    )
    events_nats_stream: str = field(
        default="MODELREG_EVENTS",
        metadata=flag("--events-nats-stream", "JetStream stream (%(default)s)"),
    )
    events_nats_subject_prefix: str = field(
        default="modelreg.events",
        metadata=flag(
            "--events-nats-subject-prefix",
            "subjects are PREFIX.<model>.<EVENT_TYPE> (default %(default)s)",
        ),
    )
    # Seconds between progress messages on an idle Watch stream.
    watch_progress_interval: float = field(
        default=5.0,
        metadata=flag(
            "--watch-progress-interval",
            "progress message on an idle Watch stream this often (default %(default)s)",
            float,
            metavar="SECONDS",
        ),
    )
    # Seconds between reads of the event log when nothing signalled a commit
    # (a safety net: commits here and NOTIFY from other replicas wake it at once).
    watch_poll_interval: float = field(
        default=1.0,
        metadata=flag(
            "--watch-poll-interval",
            "read the event log this often even without a commit signal (default %(default)s)",
            float,
            metavar="SECONDS",
        ),
    )
    metrics_listen: str = field(
        default="",
        metadata=flag(
            "--metrics-listen",
            "serve /metrics (Prometheus), /healthz and /readyz over HTTP here (default: off)",
            metavar="HOST:PORT",
        ),
    )
    # Processes serving the port together (SO_REUSEPORT); 0: one per core.
    # See workers.py for what runs once and how health and metrics add up.
    workers: int = field(
        default=0,
        metadata=flag(
            "--workers",
            "server processes sharing the port, each with its own event loop "
            "(default: one per core)",
            int,
            metavar="N",
        ),
    )
    log_format: str = field(default="json", metadata=flag("--log-format", choices=("json", "text")))
    log_level: str = field(default="INFO", metadata=flag("--log-level"))
    # Regional edge: follow this primary's event log and serve reads from a
    # local read model (writes are refused with the primary's address).
    upstream: str = field(
        default="",
        metadata=flag(
            "--upstream",
            "run as a regional edge of the primary at this address: follow its event log, "
            "serve reads and artifacts locally, refuse writes (naming the primary)",
            metavar="HOST:PORT",
        ),
    )
    region: str = field(
        default="",
        metadata=flag("--region", "this edge's region, e.g. eu-west (with --upstream)"),
    )
    # The edge's own identity towards the primary: a bearer token (e.g. a
    # service-account token with read access) and/or TLS with a client
    # certificate.
    upstream_token_file: Path | None = field(
        default=None,
        metadata=flag(
            "--upstream-token-file", "bearer token the edge presents to the primary", Path
        ),
    )
    upstream_tls_ca: Path | None = field(
        default=None,
        metadata=flag("--upstream-tls-ca", "CA (PEM) of the primary's certificate: use TLS", Path),
    )
    upstream_tls_cert: Path | None = field(
        default=None,
        metadata=flag("--upstream-tls-cert", "client certificate (PEM) for the primary", Path),
    )
    upstream_tls_key: Path | None = field(
        default=None,
        metadata=flag("--upstream-tls-key", "client key (PEM) for the primary", Path),
    )
    # What makes an edge fetch a version's artifact before anyone asks.
    warm_on: str = field(
        default="rollout",
        metadata=flag(
            "--warm-on",
            "an edge fetches a version's artifact ahead of need when a rollout of it starts "
            "(rollout, the default), also when it is approved (approval), or never (none)",
            choices=("rollout", "approval", "none"),
        ),
    )
    # On the primary: a region that has not reported for this long no
    # longer holds back rollouts that require warm edges.
    edge_region_ttl_s: float = field(
        default=300.0,
        metadata=flag(
            "--edge-region-ttl-seconds",
            "a region whose edge has not reported for this long is no longer waited for "
            "(default %(default)s)",
            float,
        ),
    )
    # Longest a read with `modelreg-min-revision` waits for that revision.
    min_revision_wait_s: float = field(
        default=5.0,
        metadata=flag(
            "--min-revision-wait-seconds",
            "a read asking for a revision not applied yet waits this long at most, then "
            "gets UNAVAILABLE (default %(default)s)",
            float,
        ),
    )
    # Seconds between database checks once ready (health follows the result).
    health_interval: float = 2.0
    db_pool_size: int = 20

    # off: nothing is enforced (allowed on loopback only, unless
    # insecure_allow_anonymous); required: every RPC but health and
    # reflection needs a principal and the permission for what it does.
    auth: str = field(
        default="off",
        metadata=flag(
            "--auth",
            "required: every call needs a principal (JWT, service-account token or client "
            "certificate) and a role that allows it; off (the default) enforces nothing and "
            "is refused off loopback",
            choices=("off", "required"),
        ),
    )
    insecure_allow_anonymous: bool = field(
        default=False,
        metadata=flag(
            "--insecure-allow-anonymous",
            "serve a non-loopback address with --auth off: anyone who reaches it may do anything",
            switch=True,
        ),
    )
    # JWT bearer tokens: the identity provider's JWKS (file or URL), the
    # issuer and audience every token must carry, the claim naming the user.
    jwt_jwks: str = field(
        default="",
        metadata=flag(
            "--jwt-jwks",
            "the identity provider's key set (JWKS), a file or an https URL",
            metavar="PATH_OR_URL",
        ),
    )
    jwt_issuer: str = field(
        default="", metadata=flag("--jwt-issuer", "the `iss` every JWT must carry")
    )
    jwt_audience: str = field(
        default="", metadata=flag("--jwt-audience", "the `aud` every JWT must include")
    )
    jwt_principal_claim: str = field(
        default="sub",
        metadata=flag(
            "--jwt-principal-claim",
            "the claim naming the user: the principal is user:<value> (default %(default)s)",
        ),
    )
    # Principals that are admin at the root whatever the policies say.
    bootstrap_admins: tuple[str, ...] = field(
        default=(),
        metadata=flag(
            "--bootstrap-admin",
            "a principal (user:ID or serviceAccount:NAME) that is admin of the whole "
            "registry whatever the policies say; repeat for several",
            metavar="PRINCIPAL",
            repeat=True,
        ),
    )

    def resolved_workers(self) -> int:
        if self.workers > 0:
            return self.workers
        from . import cpus

        return cpus.available()

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'registry.db').resolve()}"

    def resolved_blob_store(self) -> str:
        if self.blob_store:
            return self.blob_store
        return f"file://{(self.data_dir / 'blobs').resolve()}"


DEFAULTS = ServerConfig()
"""The defaults, for settings objects that take theirs from here."""
