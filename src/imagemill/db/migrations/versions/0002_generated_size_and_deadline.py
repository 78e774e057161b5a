"""generated size of outputs, job deadlines

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import imagemill.db.tables

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outputs") as batch:
        batch.add_column(sa.Column("generated_width", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("generated_height", sa.Integer(), nullable=True))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("deadline_at", imagemill.db.tables.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("deadline_at")
    with op.batch_alter_table("outputs") as batch:
        batch.drop_column("generated_height")
        batch.drop_column("generated_width")
