"""batch completion webhooks: a batch's webhook URL, default deadline and completion count;
deliveries of a batch's completion beside those of a job's events

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import sqlalchemy as sa
from alembic import op
from alembic.operations import BatchOperations

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# A delivery carries a job's event or a batch's completion, one of the two.
ONE_SUBJECT = (
    "(job_id IS NOT NULL AND event_id IS NOT NULL AND batch_id IS NULL AND batch_round IS NULL)"
    " OR (job_id IS NULL AND event_id IS NULL AND batch_id IS NOT NULL"
    " AND batch_round IS NOT NULL)"
)
EVENT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# SQLite: the attempts wait here while ``deliveries`` is rebuilt (see ``_rebuilding``).
KEPT_ATTEMPTS = "_delivery_attempts_kept"


def upgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("webhook_url", sa.String(length=2000), nullable=True))
        batch.add_column(sa.Column("deadline_seconds", sa.Float(), nullable=True))
        batch.add_column(sa.Column("completions", sa.Integer(), nullable=False, server_default="0"))
    with _rebuilding() as batch:
        batch.alter_column("job_id", existing_type=sa.String(length=40), nullable=True)
        batch.alter_column("event_id", existing_type=EVENT_ID, nullable=True)
        batch.add_column(sa.Column("batch_id", sa.String(length=40), nullable=True))
        batch.add_column(sa.Column("batch_round", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("payload", sa.JSON(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_deliveries_batch_id_batches"), "batches", ["batch_id"], ["id"]
        )
        batch.create_unique_constraint(
            op.f("uq_deliveries_batch_id_batch_round"), ["batch_id", "batch_round"]
        )
        batch.create_check_constraint("ck_deliveries_one_subject", sa.text(ONE_SUBJECT))


def downgrade() -> None:
    batch_deliveries = "SELECT id FROM deliveries WHERE batch_id IS NOT NULL"
    op.execute(f"DELETE FROM delivery_attempts WHERE delivery_id IN ({batch_deliveries})")
    op.execute("DELETE FROM deliveries WHERE batch_id IS NOT NULL")
    with _rebuilding() as batch:
        batch.drop_constraint("ck_deliveries_one_subject", type_="check")
        batch.drop_constraint(op.f("uq_deliveries_batch_id_batch_round"), type_="unique")
        batch.drop_constraint(op.f("fk_deliveries_batch_id_batches"), type_="foreignkey")
        batch.drop_column("payload")
        batch.drop_column("batch_round")
        batch.drop_column("batch_id")
        batch.alter_column("event_id", existing_type=EVENT_ID, nullable=False)
        batch.alter_column("job_id", existing_type=sa.String(length=40), nullable=False)
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("completions")
        batch.drop_column("deadline_seconds")
        batch.drop_column("webhook_url")


@contextlib.contextmanager
def _rebuilding() -> Iterator[BatchOperations]:
    """``op.batch_alter_table("deliveries")``, safe on SQLite with attempts recorded.

    SQLite changes a column by copying the table and dropping the old one; with foreign
    keys enforced (they cannot be turned off inside the migration's transaction),
    dropping ``deliveries`` while ``delivery_attempts`` rows point at it fails. The
    attempts are set aside for the rebuild and put back after it.
    """
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute(f"CREATE TABLE {KEPT_ATTEMPTS} AS SELECT * FROM delivery_attempts")
        op.execute("DELETE FROM delivery_attempts")
    with op.batch_alter_table("deliveries") as batch:
        yield batch
    if sqlite:
        op.execute(f"INSERT INTO delivery_attempts SELECT * FROM {KEPT_ATTEMPTS}")
        op.execute(f"DROP TABLE {KEPT_ATTEMPTS}")
