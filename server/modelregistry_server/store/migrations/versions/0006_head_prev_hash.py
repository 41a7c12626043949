"""The log head also keeps the previous hash, so PostgreSQL can append an
event (hash included) in a single statement.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("event_log_head") as batch:
        batch.add_column(sa.Column("prev_hash", sa.String(64), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("event_log_head") as batch:
        batch.drop_column("prev_hash")
