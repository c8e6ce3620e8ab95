"""Dispatch: what the dispatcher console shows besides the case — the tip's own words, the
case's clocks (from escalation.deadlines.v1) and its timeline (every case and deadline event).

Revision ID: dispatch_0005_console
Revises: dispatch_0004_merging
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "dispatch_0005_console"
down_revision = "dispatch_0004_merging"


def upgrade() -> None:
    op.create_table(
        "tip_text",
        sa.Column("tip_id", sa.Uuid, primary_key=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("address", sa.String),
        sa.Column("channel", sa.String, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "case_clock",
        sa.Column("case_id", sa.Uuid, primary_key=True),
        sa.Column("kind", sa.String, primary_key=True),
        sa.Column("round", sa.Integer, primary_key=True),
        sa.Column("warn_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True)),
        sa.Column("on_time", sa.Boolean),
    )
    op.create_table(
        "case_timeline",
        sa.Column("source", sa.String, primary_key=True),
        sa.Column("event_id", sa.String, primary_key=True),
        sa.Column("case_id", sa.Uuid, nullable=False, index=True),
        sa.Column("type", sa.String, nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", JSONB, nullable=False),
    )


def downgrade() -> None:
    for table in ("case_timeline", "case_clock", "tip_text"):
        op.drop_table(table)
