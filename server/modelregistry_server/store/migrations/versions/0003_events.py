"""The event log and its head.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

GENESIS = "0" * 64


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("revision", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("resource", sa.String(256), nullable=False),
        sa.Column("model", sa.String(72), nullable=False),
        sa.Column("actor", sa.String(512), nullable=False),
        sa.Column("time_us", sa.BigInteger(), nullable=False),
        sa.Column("before_json", sa.Text(), nullable=False),
        sa.Column("after_json", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("revision", name="pk_events"),
    )
    op.create_index("ix_events_model_revision", "events", ["model", "revision"])
    op.create_index("ix_events_resource_revision", "events", ["resource", "revision"])
    op.create_index("ix_events_time_us", "events", ["time_us"])
    head = op.create_table(
        "event_log_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("compacted_revision", sa.BigInteger(), nullable=False),
        sa.Column("compacted_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_event_log_head"),
    )
    op.bulk_insert(
        head,
        [
            {
                "id": 1,
                "revision": 0,
                "hash": GENESIS,
                "compacted_revision": 0,
                "compacted_hash": GENESIS,
            }
        ],
    )


def downgrade() -> None:
    op.drop_table("event_log_head")
    op.drop_index("ix_events_time_us", table_name="events")
    op.drop_index("ix_events_resource_revision", table_name="events")
    op.drop_index("ix_events_model_revision", table_name="events")
    op.drop_table("events")
