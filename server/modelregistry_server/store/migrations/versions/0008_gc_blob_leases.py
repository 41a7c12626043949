"""Garbage collection and quotas: blob leases, sizes of blob references, a
per-model storage quota, the model and principal of each upload.

Versions published before this revision may lack references to the files
their manifests list: they are marked incomplete, and the collector reads
their manifests before it deletes anything.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Plain ADD COLUMN (see 0007): no table copies.
    op.add_column(
        "models",
        sa.Column("storage_quota_bytes", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.add_column(
        "model_versions",
        sa.Column("blob_refs_complete", sa.Boolean(), nullable=False, server_default=sa.true()),
    )
    op.execute(
        "UPDATE model_versions SET blob_refs_complete = "
        + ("false" if op.get_context().dialect.name == "postgresql" else "0")
        + " WHERE artifact_digest IS NOT NULL"
    )
    op.add_column(
        "blob_refs",
        sa.Column("size_bytes", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.add_column("uploads", sa.Column("model_id", Id, nullable=True))
    op.add_column(
        "uploads", sa.Column("principal", sa.String(512), nullable=False, server_default="")
    )
    op.create_index("ix_uploads_model_id", "uploads", ["model_id"])
    op.create_index("ix_uploads_principal", "uploads", ["principal"])
    op.create_table(
        "blob_leases",
        sa.Column("digest", sa.String(71), nullable=False),
        sa.Column("expire_time_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("digest", name="pk_blob_leases"),
    )


def downgrade() -> None:
    op.drop_table("blob_leases")
    op.drop_index("ix_uploads_principal", table_name="uploads")
    op.drop_index("ix_uploads_model_id", table_name="uploads")
    with op.batch_alter_table("uploads") as batch:
        batch.drop_column("principal")
        batch.drop_column("model_id")
    with op.batch_alter_table("blob_refs") as batch:
        batch.drop_column("size_bytes")
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("blob_refs_complete")
    with op.batch_alter_table("models") as batch:
        batch.drop_column("storage_quota_bytes")
