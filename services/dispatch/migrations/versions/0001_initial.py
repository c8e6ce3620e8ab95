"""Dispatch: cases, outbox and inbox.

Revision ID: dispatch_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from services.runtime.migrations import create_runtime_tables

revision = "dispatch_0001"
down_revision = None


def upgrade() -> None:
    create_runtime_tables()
    op.create_table(
        "cases",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tip_id", sa.Uuid, nullable=False, unique=True),
        sa.Column("status", sa.String, nullable=False, index=True),
        sa.Column("matter_code", sa.String),
        sa.Column("township_code", sa.String, index=True),
        sa.Column("village_code", sa.String),
        sa.Column("grid_id", sa.String),
        sa.Column("urgency", sa.String, nullable=False),
        sa.Column("unit_id", sa.String, index=True),
        sa.Column("staff_id", sa.String, index=True),
        sa.Column("queue", sa.String),
        sa.Column("catalogue_version", sa.String, nullable=False),
        sa.Column("routing", JSONB, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    for table in ("cases", "inbox", "outbox"):
        op.drop_table(table)
