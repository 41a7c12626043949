"""Relay cursors: how far each outbox relay has published the event log.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "relay_cursors",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("update_time_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_relay_cursors"),
    )


def downgrade() -> None:
    op.drop_table("relay_cursors")
