"""Regional edges: the regions that report to the primary and the versions
each holds warm (its artifact fetched and verified).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "edge_regions",
        sa.Column("region", sa.String(63), nullable=False),
        sa.Column("last_seen_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("region", name="pk_edge_regions"),
    )
    op.create_table(
        "edge_warm_versions",
        sa.Column("region", sa.String(63), nullable=False),
        sa.Column("model", sa.String(63), nullable=False),
        sa.Column("version", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("warm_time_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("region", "model", "version", name="pk_edge_warm_versions"),
    )
    op.create_index(
        "ix_edge_warm_versions_model_version", "edge_warm_versions", ["model", "version"]
    )


def downgrade() -> None:
    op.drop_index("ix_edge_warm_versions_model_version", table_name="edge_warm_versions")
    op.drop_table("edge_warm_versions")
    op.drop_table("edge_regions")
