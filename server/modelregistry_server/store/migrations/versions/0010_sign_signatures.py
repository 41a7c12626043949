"""Signatures attached to versions, and trust policies.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "version_signatures",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("model_version_id", Id, nullable=False),
        sa.Column("blob_digest", sa.String(71), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("signer_kind", sa.String(16), nullable=False),
        sa.Column("signer", sa.String(512), nullable=False),
        sa.Column("trust_anchor", sa.String(71), nullable=False),
        sa.Column("file_count", sa.Integer(), nullable=False),
        sa.Column("creator", sa.String(512), nullable=False),
        sa.Column("create_time_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_version_signatures"),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name="fk_version_signatures_model_version_id",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "model_version_id",
            "blob_digest",
            name="uq_version_signatures_model_version_id_blob_digest",
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_version_signatures_blob_digest", "version_signatures", ["blob_digest"])
    op.create_table(
        "trust_policies",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("scope", sa.String(96), nullable=False),
        sa.Column("model_id", Id, nullable=True),
        sa.Column("trusted_keys", Json, nullable=False),
        sa.Column("trusted_chains", Json, nullable=False),
        sa.Column("require_signature_aliases", Json, nullable=False),
        sa.Column("row_version", sa.BigInteger(), nullable=False),
        sa.Column("update_time_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_trust_policies"),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name="fk_trust_policies_model_id", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("scope", name="uq_trust_policies_scope"),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("trust_policies")
    op.drop_index("ix_version_signatures_blob_digest", table_name="version_signatures")
    op.drop_table("version_signatures")
