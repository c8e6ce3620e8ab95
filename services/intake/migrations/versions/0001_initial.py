"""Intake: tips, their timeline, outbox and inbox.

Revision ID: intake_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from services.runtime.migrations import create_runtime_tables

revision = "intake_0001"
down_revision = None


def upgrade() -> None:
    create_runtime_tables()
    op.create_table(
        "tip",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("tracking_no", sa.String, nullable=False, unique=True),
        sa.Column("access_code_hash", sa.String, nullable=False),
        sa.Column("channel", sa.String, nullable=False),
        sa.Column("external_ref", sa.String),
        sa.Column("text", sa.String, nullable=False),
        sa.Column("lat", sa.Float),
        sa.Column("lon", sa.Float),
        sa.Column("address", sa.String),
        sa.Column("grid_id", sa.String),
        sa.Column("category_hint", sa.String),
        sa.Column("contact_sealed", sa.LargeBinary),
        sa.Column("masked_phone", sa.String),
        sa.Column("phone_hash", sa.String, index=True),
        sa.Column("anonymous", sa.Boolean, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("case_id", sa.Uuid, index=True),
        sa.Column("status", sa.String, nullable=False),
    )
    op.create_table(
        "tip_timeline",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("tip_id", sa.Uuid, sa.ForeignKey("tip.id"), nullable=False, index=True),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    for table in ("tip_timeline", "tip", "inbox", "outbox"):
        op.drop_table(table)
