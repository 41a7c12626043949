"""Resumable uploads.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "uploads",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("model_version_id", Id, nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("digest", sa.String(71), nullable=True),
        sa.Column("media_type", sa.String(128), nullable=False),
        sa.Column("create_time_us", sa.BigInteger(), nullable=False),
        sa.Column("update_time_us", sa.BigInteger(), nullable=False),
        sa.Column("expire_time_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_uploads"),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name="fk_uploads_model_version_id",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_uploads_expire_time_us", "uploads", ["expire_time_us"])
    op.create_index("ix_uploads_model_version_id", "uploads", ["model_version_id"])


def downgrade() -> None:
    op.drop_index("ix_uploads_model_version_id", table_name="uploads")
    op.drop_index("ix_uploads_expire_time_us", table_name="uploads")
    op.drop_table("uploads")
