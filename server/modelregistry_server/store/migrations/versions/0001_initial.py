"""Models, versions, aliases and server settings.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("uid", sa.String(36), nullable=False),
        sa.Column("display_name", sa.String(256), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("labels", Json, nullable=False),
        sa.Column("latest_version", sa.BigInteger(), nullable=False),
        sa.Column("row_version", sa.BigInteger(), nullable=False),
        sa.Column("create_time_us", sa.BigInteger(), nullable=False),
        sa.Column("update_time_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_models"),
        sa.UniqueConstraint("name", name="uq_models_name"),
        sa.UniqueConstraint("uid", name="uq_models_uid"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "model_versions",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("model_id", Id, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("uid", sa.String(36), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("source_uri", sa.String(2048), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("labels", Json, nullable=False),
        sa.Column("metadata", Json, nullable=False),
        sa.Column("artifact_digest", sa.String(71), nullable=True),
        sa.Column("artifact_size", sa.BigInteger(), nullable=True),
        sa.Column("artifact_chunk_size", sa.BigInteger(), nullable=True),
        sa.Column("artifact_media_type", sa.String(128), nullable=True),
        sa.Column("row_version", sa.BigInteger(), nullable=False),
        sa.Column("create_time_us", sa.BigInteger(), nullable=False),
        sa.Column("update_time_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_model_versions"),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name="fk_model_versions_model_id", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("model_id", "version", name="uq_model_versions_model_id_version"),
        sa.UniqueConstraint("uid", name="uq_model_versions_uid"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "aliases",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("model_id", Id, nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("version_id", Id, nullable=False),
        sa.Column("row_version", sa.BigInteger(), nullable=False),
        sa.Column("create_time_us", sa.BigInteger(), nullable=False),
        sa.Column("update_time_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_aliases"),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name="fk_aliases_model_id", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["version_id"], ["model_versions.id"], name="fk_aliases_version_id"
        ),
        sa.UniqueConstraint("model_id", "name", name="uq_aliases_model_id_name"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_aliases_version_id", "aliases", ["version_id"])
    op.create_table(
        "settings",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_settings"),
    )


def downgrade() -> None:
    op.drop_table("settings")
    op.drop_index("ix_aliases_version_id", table_name="aliases")
    op.drop_table("aliases")
    op.drop_table("model_versions")
    op.drop_table("models")
