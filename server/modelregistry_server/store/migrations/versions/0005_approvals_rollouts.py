"""Approvals, protected aliases and rollouts.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
RUNNING = sa.text("state IN ('ACTIVE', 'PAUSED')")


def upgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("protected_aliases", Json, nullable=False, server_default="[]"))
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(
            sa.Column("approval_state", sa.String(16), nullable=False, server_default="PENDING")
        )
        batch.add_column(
            sa.Column("approval_actor", sa.String(512), nullable=False, server_default="")
        )
        batch.add_column(
            sa.Column("approval_comment", sa.Text(), nullable=False, server_default="")
        )
        batch.add_column(
            sa.Column("approval_time_us", sa.BigInteger(), nullable=False, server_default="0")
        )
    op.create_table(
        "rollouts",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("model_id", Id, nullable=False),
        sa.Column("rollout_id", sa.String(12), nullable=False),
        sa.Column("alias", sa.String(63), nullable=False),
        sa.Column("stable_version_id", Id, nullable=False),
        sa.Column("candidate_version_id", Id, nullable=False),
        sa.Column("steps", Json, nullable=False),
        sa.Column("percent", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("row_version", sa.BigInteger(), nullable=False),
        sa.Column("create_time_us", sa.BigInteger(), nullable=False),
        sa.Column("update_time_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rollouts"),
        sa.ForeignKeyConstraint(
            ["model_id"], ["models.id"], name="fk_rollouts_model_id", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["stable_version_id"], ["model_versions.id"], name="fk_rollouts_stable_version_id"
        ),
        sa.ForeignKeyConstraint(
            ["candidate_version_id"],
            ["model_versions.id"],
            name="fk_rollouts_candidate_version_id",
        ),
        sa.UniqueConstraint("model_id", "rollout_id", name="uq_rollouts_model_id_rollout_id"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_rollouts_one_running_per_alias",
        "rollouts",
        ["model_id", "alias"],
        unique=True,
        sqlite_where=RUNNING,
        postgresql_where=RUNNING,
    )
    op.create_index("ix_rollouts_stable_version_id", "rollouts", ["stable_version_id"])
    op.create_index("ix_rollouts_candidate_version_id", "rollouts", ["candidate_version_id"])


def downgrade() -> None:
    op.drop_index("ix_rollouts_candidate_version_id", table_name="rollouts")
    op.drop_index("ix_rollouts_stable_version_id", table_name="rollouts")
    op.drop_index("ix_rollouts_one_running_per_alias", table_name="rollouts")
    op.drop_table("rollouts")
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("approval_time_us")
        batch.drop_column("approval_comment")
        batch.drop_column("approval_actor")
        batch.drop_column("approval_state")
    with op.batch_alter_table("models") as batch:
        batch.drop_column("protected_aliases")
