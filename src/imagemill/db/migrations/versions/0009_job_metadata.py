"""jobs found by their metadata (GET /v1/jobs?metadata.KEY=VALUE)

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

from imagemill.db.rows import metadata_rows

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BATCH = 1000


def upgrade() -> None:
    table = op.create_table(
        "job_metadata",
        sa.Column("job_id", sa.String(length=40), sa.ForeignKey("jobs.id"), primary_key=True),
        sa.Column("entry", sa.String(length=64), primary_key=True),
        sa.Column("owner_id", sa.String(length=40), nullable=False),
    )
    op.create_index("ix_job_metadata_owner_id_entry", "job_metadata", ["owner_id", "entry"])
    # The jobs stored before: their metadata indexed as a new job's is.
    conn = op.get_bind()
    jobs = sa.table("jobs", sa.column("id"), sa.column("owner_id"), sa.column("request"))
    last = ""
    while True:
        rows = conn.execute(
            sa.select(jobs.c.id, jobs.c.owner_id, jobs.c.request)
            .where(jobs.c.id > last)
            .order_by(jobs.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        entries = []
        for row in rows:
            request = json.loads(row.request) if isinstance(row.request, str) else row.request
            values = (request or {}).get("metadata")
            if isinstance(values, dict):
                entries += metadata_rows(row.id, row.owner_id, values)
        if entries:
            op.bulk_insert(table, entries)
        last = rows[-1].id


def downgrade() -> None:
    op.drop_index("ix_job_metadata_owner_id_entry", table_name="job_metadata")
    op.drop_table("job_metadata")
