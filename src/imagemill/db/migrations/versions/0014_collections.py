"""favourite outputs, and collections (boards) of outputs

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from imagemill.db.tables import UTCDateTime

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "outputs", sa.Column("favourite", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.create_table(
        "collections",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("owner_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["owners.id"], name=op.f("fk_collections_owner_id_owners")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_collections")),
        sa.UniqueConstraint("owner_id", "name", name=op.f("uq_collections_owner_id_name")),
    )
    op.create_table(
        "collection_items",
        sa.Column("collection_id", sa.String(length=40), nullable=False),
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("output_index", sa.Integer(), nullable=False),
        sa.Column("added_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["collections.id"],
            name=op.f("fk_collection_items_collection_id_collections"),
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_collection_items_job_id_jobs")
        ),
        sa.PrimaryKeyConstraint(
            "collection_id", "job_id", "output_index", name=op.f("pk_collection_items")
        ),
    )
    op.create_index(op.f("ix_collection_items_job_id"), "collection_items", ["job_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_collection_items_job_id"), table_name="collection_items")
    op.drop_table("collection_items")
    op.drop_table("collections")
    op.drop_column("outputs", "favourite")
