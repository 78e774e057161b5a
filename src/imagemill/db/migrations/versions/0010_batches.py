"""batches: job requests submitted as one, their items ordinary jobs

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from imagemill.db.tables import UTCDateTime

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.String(length=40), primary_key=True),
        sa.Column("owner_id", sa.String(length=40), sa.ForeignKey("owners.id"), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_batches_owner_id_id", "batches", ["owner_id", "id"])
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("batch_id", sa.String(length=40), nullable=True))
        batch.create_index("ix_jobs_batch_id", ["batch_id"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_batch_id")
        batch.drop_column("batch_id")
    op.drop_index("ix_batches_owner_id_id", table_name="batches")
    op.drop_table("batches")
