"""Access control: IAM policies, service-account tokens, blob references,
version creators and separation of duties.

Existing versions get a reference to their manifest; the files their
manifests list are referenced from the next upload on (until then a
download of such a file by digest needs the permission on the registry).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Plain ADD COLUMN (SQLite has it): a batch operation would copy the
    # tables and lose their AUTOINCREMENT, and with it never-reused ids.
    op.add_column(
        "models",
        sa.Column("separation_of_duties", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.add_column(
        "model_versions",
        sa.Column("creator", sa.String(512), nullable=False, server_default=""),
    )
    op.create_table(
        "iam_policies",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("resource", sa.String(160), nullable=False),
        sa.Column("model", sa.String(63), nullable=False),
        sa.Column("row_version", sa.BigInteger(), nullable=False),
        sa.Column("update_time_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_iam_policies"),
        sa.UniqueConstraint("resource", name="uq_iam_policies_resource"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_iam_policies_model", "iam_policies", ["model"])
    op.create_table(
        "iam_bindings",
        sa.Column("policy_id", Id, nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("member", sa.String(320), nullable=False),
        sa.ForeignKeyConstraint(
            ["policy_id"], ["iam_policies.id"], name="fk_iam_bindings_policy_id", ondelete="CASCADE"
        ),
        sa.UniqueConstraint(
            "policy_id", "role", "member", name="uq_iam_bindings_policy_id_role_member"
        ),
    )
    op.create_index("ix_iam_bindings_member", "iam_bindings", ["member"])
    op.create_table(
        "service_account_tokens",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("token_id", sa.String(16), nullable=False),
        sa.Column("service_account", sa.String(63), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("description", sa.String(256), nullable=False),
        sa.Column("creator", sa.String(512), nullable=False),
        sa.Column("create_time_us", sa.BigInteger(), nullable=False),
        sa.Column("expire_time_us", sa.BigInteger(), nullable=False),
        sa.Column("revoke_time_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_service_account_tokens"),
        sa.UniqueConstraint("token_id", name="uq_service_account_tokens_token_id"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_service_account_tokens_service_account", "service_account_tokens", ["service_account"]
    )
    op.create_table(
        "blob_refs",
        sa.Column("digest", sa.String(71), nullable=False),
        sa.Column("model_version_id", Id, nullable=False),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name="fk_blob_refs_model_version_id",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "digest", "model_version_id", name="uq_blob_refs_digest_model_version_id"
        ),
    )
    op.create_index("ix_blob_refs_model_version_id", "blob_refs", ["model_version_id"])
    op.execute(
        "INSERT INTO blob_refs (digest, model_version_id) "
        "SELECT artifact_digest, id FROM model_versions WHERE artifact_digest IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_index("ix_blob_refs_model_version_id", table_name="blob_refs")
    op.drop_table("blob_refs")
    op.drop_index("ix_service_account_tokens_service_account", table_name="service_account_tokens")
    op.drop_table("service_account_tokens")
    op.drop_index("ix_iam_bindings_member", table_name="iam_bindings")
    op.drop_table("iam_bindings")
    op.drop_index("ix_iam_policies_model", table_name="iam_policies")
    op.drop_table("iam_policies")
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("creator")
    with op.batch_alter_table("models") as batch:
        batch.drop_column("separation_of_duties")
