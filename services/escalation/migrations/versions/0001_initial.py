"""Escalation: deadlines, outbox and inbox.

Revision ID: escalation_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from services.runtime.migrations import create_runtime_tables

revision = "escalation_0001"
down_revision = None


def upgrade() -> None:
    create_runtime_tables()
    op.create_table(
        "deadline",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("case_id", sa.Uuid, nullable=False, index=True),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("warn_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("policy_id", sa.String, nullable=False),
        sa.Column("policy_snapshot", JSONB, nullable=False),
        sa.UniqueConstraint("case_id", "kind"),
    )


def downgrade() -> None:
    for table in ("deadline", "inbox", "outbox"):
        op.drop_table(table)
