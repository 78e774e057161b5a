"""text outputs (captions, enhanced prompts, descriptions) and enhanced prompts of jobs

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outputs") as batch:
        batch.add_column(sa.Column("text", sa.Text(), nullable=True))
        batch.add_column(sa.Column("tone", sa.String(40), nullable=True))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("enhanced_prompt", sa.Text(), nullable=True))
        batch.add_column(sa.Column("enhance_model", sa.String(200), nullable=True))
        batch.add_column(
            sa.Column("enhance_cost_usd", sa.Float(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("enhance_cost_usd")
        batch.drop_column("enhance_model")
        batch.drop_column("enhanced_prompt")
    with op.batch_alter_table("outputs") as batch:
        batch.drop_column("tone")
        batch.drop_column("text")
