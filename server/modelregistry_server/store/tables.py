"""The SQL schema (SQLAlchemy Core), shared by PostgreSQL and SQLite.

Every table has a surrogate `id` that is never reused (identity on
PostgreSQL, AUTOINCREMENT on SQLite) and a `row_version` counter that is
bumped on every write; together they form the resource's etag. Times are
microseconds since the Unix epoch (portable, exact, cheap to compare).
The migrations under `migrations/` create exactly this schema.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Id = BigInteger().with_variant(Integer, "sqlite")
Json = JSON().with_variant(JSONB(), "postgresql")

models = Table(
    "models",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(63), nullable=False, unique=True),
    Column("uid", String(36), nullable=False, unique=True),
    Column("display_name", String(256), nullable=False, default=""),
    Column("description", Text, nullable=False, default=""),
    Column("labels", Json, nullable=False),
    # Last version number handed out; bumped with a row lock, never reused.
    Column("latest_version", BigInteger, nullable=False, default=0),
    # Alias ids that only APPROVED versions may reach.
    Column("protected_aliases", Json, nullable=False, server_default="[]"),
    # Separation of duties: a version's creator may not review it.
    Column("separation_of_duties", Boolean, nullable=False, server_default=false()),
    # Storage quota in bytes; 0: the registry-wide default.
    Column("storage_quota_bytes", BigInteger, nullable=False, server_default="0"),
    Column("row_version", BigInteger, nullable=False, default=1),
    Column("create_time_us", BigInteger, nullable=False),
    Column("update_time_us", BigInteger, nullable=False),
    sqlite_autoincrement=True,
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("model_id", Id, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("uid", String(36), nullable=False, unique=True),
    Column("state", String(16), nullable=False),
    Column("source_uri", String(2048), nullable=False, default=""),
    Column("description", Text, nullable=False, default=""),
    Column("labels", Json, nullable=False),
    Column("metadata", Json, nullable=False),
    Column("artifact_digest", String(71), nullable=True),
    Column("artifact_size", BigInteger, nullable=True),
    Column("artifact_chunk_size", BigInteger, nullable=True),
    Column("artifact_media_type", String(128), nullable=True),
    Column("approval_state", String(16), nullable=False, server_default="PENDING"),
    Column("approval_actor", String(512), nullable=False, server_default=""),
    Column("approval_comment", Text, nullable=False, server_default=""),
    Column("approval_time_us", BigInteger, nullable=False, server_default="0"),
    # The principal that created the version (for separation of duties).
    Column("creator", String(512), nullable=False, server_default=""),
    # Whether blob_refs lists every file of its manifest (false: published
    # before file references were recorded; the collector fills them in).
    Column("blob_refs_complete", Boolean, nullable=False, server_default=true()),
    Column("row_version", BigInteger, nullable=False, default=1),
    Column("create_time_us", BigInteger, nullable=False),
    Column("update_time_us", BigInteger, nullable=False),
    UniqueConstraint("model_id", "version"),
    sqlite_autoincrement=True,
)

aliases = Table(
    "aliases",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("model_id", Id, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(63), nullable=False),
    Column("version_id", Id, ForeignKey("model_versions.id"), nullable=False),
    Column("row_version", BigInteger, nullable=False, default=1),
    Column("create_time_us", BigInteger, nullable=False),
    Column("update_time_us", BigInteger, nullable=False),
    UniqueConstraint("model_id", "name"),
    Index(None, "version_id"),
    sqlite_autoincrement=True,
)

# Resumable uploads in progress. The staged bytes live in the blob store
# under the same id; this row is what survives a restart and what expires.
uploads = Table(
    "uploads",
    metadata,
    Column("id", String(36), primary_key=True),
    Column(
        "model_version_id",
        Id,
        ForeignKey("model_versions.id", ondelete="CASCADE"),
        nullable=True,
    ),
    Column("size_bytes", BigInteger, nullable=False),
    Column("digest", String(71), nullable=True),
    Column("media_type", String(128), nullable=False, default=""),
    Column("create_time_us", BigInteger, nullable=False),
    Column("update_time_us", BigInteger, nullable=False),
    Column("expire_time_us", BigInteger, nullable=False),
    # The model a blob upload counts against (its version's model for a
    # manifest upload); no foreign key: a deleted model's uploads expire.
    Column("model_id", Id, nullable=True),
    # Who opened it (open uploads per principal are capped).
    Column("principal", String(512), nullable=False, server_default=""),
    Index(None, "expire_time_us"),
    Index(None, "model_version_id"),
    Index(None, "model_id"),
    Index(None, "principal"),
)

# Server-wide settings shared by every replica (the page-token signing key).
settings = Table(
    "settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", LargeBinary, nullable=False),
)

# The event log (transactional outbox): one row per change, written in the
# change's own transaction. `revision` comes from `event_log_head`, whose row
# lock serializes appends so revisions commit in order: a reader that has
# seen revision N has seen every event up to N.
events = Table(
    "events",
    metadata,
    Column("revision", BigInteger, primary_key=True, autoincrement=False),
    Column("type", String(32), nullable=False),
    Column("resource", String(256), nullable=False),
    Column("model", String(72), nullable=False),
    Column("actor", String(512), nullable=False),
    Column("time_us", BigInteger, nullable=False),
    Column("before_json", Text, nullable=False),
    Column("after_json", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index(None, "model", "revision"),
    Index(None, "resource", "revision"),
    Index(None, "time_us"),
)

event_log_head = Table(
    "event_log_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("revision", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    # The hash before the newest event's (what its prev_hash is).
    Column("prev_hash", String(64), nullable=False, server_default=""),
    # Events up to this revision have been compacted away (0: none).
    Column("compacted_revision", BigInteger, nullable=False),
    Column("compacted_hash", String(64), nullable=False),
)

# How far each outbox relay (e.g. the NATS publisher, named after its stream)
# has published the event log: every event up to `revision` has been
# acknowledged by the queue. Advanced after each acknowledged batch.
relay_cursors = Table(
    "relay_cursors",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("revision", BigInteger, nullable=False),
    Column("update_time_us", BigInteger, nullable=False),
)


# Progressive rollouts. At most one running (ACTIVE or PAUSED) per alias,
# enforced by a partial unique index.
rollouts = Table(
    "rollouts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("model_id", Id, ForeignKey("models.id", ondelete="CASCADE"), nullable=False),
    Column("rollout_id", String(12), nullable=False),
    Column("alias", String(63), nullable=False),
    Column("stable_version_id", Id, ForeignKey("model_versions.id"), nullable=False),
    Column("candidate_version_id", Id, ForeignKey("model_versions.id"), nullable=False),
    Column("steps", Json, nullable=False),
    Column("percent", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("row_version", BigInteger, nullable=False, default=1),
    Column("create_time_us", BigInteger, nullable=False),
    Column("update_time_us", BigInteger, nullable=False),
    UniqueConstraint("model_id", "rollout_id"),
    Index(
        "ix_rollouts_one_running_per_alias",
        "model_id",
        "alias",
        unique=True,
        sqlite_where=text("state IN ('ACTIVE', 'PAUSED')"),
        postgresql_where=text("state IN ('ACTIVE', 'PAUSED')"),
    ),
    Index(None, "stable_version_id"),
    Index(None, "candidate_version_id"),
    sqlite_autoincrement=True,
)


# IAM policies: one row per resource that has (or had) a policy, `registry`,
# `models/{model}` or `models/{model}/aliases/{alias}`; `model` is empty for
# the registry and lets a model's deletion take its policies along. The row
# version is the policy's etag; its bindings are rows of `iam_bindings`.
iam_policies = Table(
    "iam_policies",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("resource", String(160), nullable=False, unique=True),
    Column("model", String(63), nullable=False),
    Column("row_version", BigInteger, nullable=False, default=1),
    Column("update_time_us", BigInteger, nullable=False),
    Index(None, "model"),
    sqlite_autoincrement=True,
)

# One row per (role, member) of a policy; indexed by member so that the
# models a caller may see are one query.
iam_bindings = Table(
    "iam_bindings",
    metadata,
    Column("policy_id", Id, ForeignKey("iam_policies.id", ondelete="CASCADE"), nullable=False),
    Column("role", String(32), nullable=False),
    Column("member", String(320), nullable=False),
    UniqueConstraint("policy_id", "role", "member"),
    Index(None, "member"),
)

# Service-account tokens: only a hash of each secret is kept.
service_account_tokens = Table(
    "service_account_tokens",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("token_id", String(16), nullable=False, unique=True),
    Column("service_account", String(63), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("description", String(256), nullable=False),
    Column("creator", String(512), nullable=False),
    Column("create_time_us", BigInteger, nullable=False),
    # 0: never expires / not revoked.
    Column("expire_time_us", BigInteger, nullable=False),
    Column("revoke_time_us", BigInteger, nullable=False),
    Index(None, "service_account"),
    sqlite_autoincrement=True,
)

# Which versions reference which blobs: the manifest and every file it
# lists. A download by digest is allowed to whoever may download one of them.
blob_refs = Table(
    "blob_refs",
    metadata,
    Column("digest", String(71), nullable=False),
    Column(
        "model_version_id",
        Id,
        ForeignKey("model_versions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    # The blob's size (0 for references recorded before sizes were).
    Column("size_bytes", BigInteger, nullable=False, server_default="0"),
    UniqueConstraint("digest", "model_version_id"),
    Index(None, "model_version_id"),
)

# Short-lived claims on blobs: a finished blob upload holds its blob until a
# manifest references it, and a publish holds the blobs it is about to
# reference. The row is also what the collector locks when it deletes a
# blob, so a claim and a deletion of the same digest never interleave (see
# gc_sql).
blob_leases = Table(
    "blob_leases",
    metadata,
    Column("digest", String(71), primary_key=True),
    Column("expire_time_us", BigInteger, nullable=False),
)


# Short names for the column collections, for queries that join several
# tables (`M.id == V.model_id`). Defined here once so that every module
# spells them the same way.
M = models.c
V = model_versions.c
A = aliases.c
U = uploads.c
R = rollouts.c
E = events.c
H = event_log_head.c
C = relay_cursors.c
IP = iam_policies.c
IB = iam_bindings.c
SAT = service_account_tokens.c
BR = blob_refs.c
BL = blob_leases.c


# Regional edges as the primary knows them (see edge/warm_states.py): each
# region's last report, and which versions it holds, verified. Keyed by
# names, not ids: a report is the edge's statement, kept as made.
edge_regions = Table(
    "edge_regions",
    metadata,
    Column("region", String(63), primary_key=True),
    Column("last_seen_us", BigInteger, nullable=False),
)

edge_warm_versions = Table(
    "edge_warm_versions",
    metadata,
    Column("region", String(63), primary_key=True),
    Column("model", String(63), primary_key=True),
    Column("version", BigInteger, primary_key=True, autoincrement=False),
    Column("warm_time_us", BigInteger, nullable=False),
    Index(None, "model", "version"),
)

# Signatures attached to versions (OMS bundles). The bundle itself is a
# blob: `blob_digest` is a reference to it that blob reclaiming must count.
version_signatures = Table(
    "version_signatures",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column(
        "model_version_id",
        Id,
        ForeignKey("model_versions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("blob_digest", String(71), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("signer_kind", String(16), nullable=False),
    Column("signer", String(512), nullable=False),
    Column("trust_anchor", String(71), nullable=False),
    Column("file_count", Integer, nullable=False),
    Column("creator", String(512), nullable=False),
    Column("create_time_us", BigInteger, nullable=False),
    UniqueConstraint("model_version_id", "blob_digest"),
    Index(None, "blob_digest"),
    sqlite_autoincrement=True,
)

# Trust policies: one per model that has one, plus the registry-wide
# default (scope `trustPolicies/default`, no model).
trust_policies = Table(
    "trust_policies",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("scope", String(96), nullable=False, unique=True),
    Column("model_id", Id, ForeignKey("models.id", ondelete="CASCADE"), nullable=True),
    Column("trusted_keys", Json, nullable=False),
    Column("trusted_chains", Json, nullable=False),
    Column("require_signature_aliases", Json, nullable=False),
    Column("row_version", BigInteger, nullable=False, default=1),
    Column("update_time_us", BigInteger, nullable=False),
    sqlite_autoincrement=True,
)

VS = version_signatures.c
TP = trust_policies.c
