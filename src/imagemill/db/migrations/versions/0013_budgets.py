"""budgets per API key and per owner: limits, what each period spent and holds, what a
job reserved, which key submitted it and the trace it continues; admin keys; rate limits
per key

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from imagemill.db.tables import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

LIMITS = ("requests_per_minute", "images_per_minute", "concurrent_jobs")


def upgrade() -> None:
    op.create_table(
        "budgets",
        sa.Column("scope", sa.String(length=40), nullable=False),
        sa.Column("owner_id", sa.String(length=40), nullable=False),
        sa.Column("limit_micros", sa.BigInteger(), nullable=False),
        sa.Column("period", sa.String(length=10), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["owners.id"], name=op.f("fk_budgets_owner_id_owners")
        ),
        sa.PrimaryKeyConstraint("scope", name=op.f("pk_budgets")),
    )
    op.create_index(op.f("ix_budgets_owner_id"), "budgets", ["owner_id"])
    op.create_table(
        "budget_spend",
        sa.Column("scope", sa.String(length=40), nullable=False),
        sa.Column("period_start", UTCDateTime(timezone=True), nullable=False),
        sa.Column("spent_micros", sa.BigInteger(), nullable=False),
        sa.Column("reserved_micros", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "period_start", name=op.f("pk_budget_spend")),
    )
    op.add_column("jobs", sa.Column("key_id", sa.String(length=40), nullable=True))
    op.add_column("jobs", sa.Column("reservation", sa.JSON(), nullable=True))
    op.add_column("jobs", sa.Column("trace_parent", sa.String(length=64), nullable=True))
    op.create_index(op.f("ix_jobs_key_id_status"), "jobs", ["key_id", "status"])
    op.add_column(
        "api_keys", sa.Column("admin", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    for limit in LIMITS:
        op.add_column("api_keys", sa.Column(limit, sa.Integer(), nullable=True))


def downgrade() -> None:
    # Plain ``ALTER TABLE … DROP COLUMN`` (SQLite 3.35 and later), not a batch rebuild: on
    # SQLite a rebuild drops ``jobs``, which the rows of ``events`` and others point at.
    for limit in LIMITS:
        op.drop_column("api_keys", limit)
    op.drop_column("api_keys", "admin")
    op.drop_index(op.f("ix_jobs_key_id_status"), table_name="jobs")
    op.drop_column("jobs", "trace_parent")
    op.drop_column("jobs", "reservation")
    op.drop_column("jobs", "key_id")
    op.drop_table("budget_spend")
    op.drop_index(op.f("ix_budgets_owner_id"), table_name="budgets")
    op.drop_table("budgets")
