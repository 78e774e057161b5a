"""request fingerprints (idempotency, retried OpenAI-compatible calls); 64-bit seeds

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("request_fingerprint", sa.String(length=64), nullable=True))
        batch.create_index(
            "ix_jobs_owner_id_request_fingerprint", ["owner_id", "request_fingerprint"]
        )
    # Seeds run to 2**32 - 1, past PostgreSQL's 32-bit integer.
    with op.batch_alter_table("outputs") as batch:
        batch.alter_column("seed", type_=sa.BigInteger(), existing_type=sa.Integer())


def downgrade() -> None:
    with op.batch_alter_table("outputs") as batch:
        batch.alter_column("seed", type_=sa.Integer(), existing_type=sa.BigInteger())
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_owner_id_request_fingerprint")
        batch.drop_column("request_fingerprint")
