"""what each finished job is about, as a sentence embedding (search by meaning)

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from imagemill.db.tables import UTCDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_embeddings",
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("owner_id", sa.String(length=40), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_embeddings_job_id_jobs")
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_job_embeddings")),
    )
    op.create_index(op.f("ix_job_embeddings_owner_id"), "job_embeddings", ["owner_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_job_embeddings_owner_id"), table_name="job_embeddings")
    op.drop_table("job_embeddings")
