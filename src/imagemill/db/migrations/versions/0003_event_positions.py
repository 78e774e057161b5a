"""events get a log-wide position (id), for streams of all of an owner's jobs

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import imagemill.db.tables

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":  # index names are schema-wide there
        op.execute("ALTER TABLE events RENAME CONSTRAINT pk_events TO pk_events_old")
    op.create_table(
        "events_new",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.String(length=40), nullable=False),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", imagemill.db.tables.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_events_job_id_jobs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("job_id", "seq", name=op.f("uq_events_job_id_seq")),
        sqlite_autoincrement=True,
    )
    op.execute(
        "INSERT INTO events_new (job_id, seq, owner_id, type, data, created_at) "
        "SELECT job_id, seq, owner_id, type, data, created_at FROM events "
        "ORDER BY created_at, job_id, seq"
    )
    op.drop_table("events")
    op.rename_table("events_new", "events")
    op.create_index("ix_events_owner_id_id", "events", ["owner_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_events_owner_id_id", table_name="events")
    with op.batch_alter_table("events", recreate="always") as batch:
        batch.drop_constraint("uq_events_job_id_seq", type_="unique")
        batch.drop_column("id")
        batch.create_primary_key("pk_events", ["job_id", "seq"])
