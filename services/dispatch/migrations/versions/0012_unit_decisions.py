"""Dispatch: the joint meetings' decisions the townships' units own (联席会议, issue #15 item 5).

Escalation owns the meeting; dispatch keeps the decisions a unit of a township owns, so that
the unit reports them done through dispatch with its own token, as it acts on its cases.

Revision ID: dispatch_0012
Revises: dispatch_0011_case_evidence
"""

import sqlalchemy as sa
from alembic import op

revision = "dispatch_0012"
down_revision = "dispatch_0011_case_evidence"


def upgrade() -> None:
    op.create_table(
        "unit_decision",
        sa.Column("decision_id", sa.Uuid, primary_key=True),
        sa.Column("meeting_id", sa.Uuid, nullable=False),
        sa.Column("case_id", sa.Uuid, nullable=False),
        sa.Column("township_code", sa.String, nullable=False),
        sa.Column("unit_id", sa.String, nullable=False),
        sa.Column("task", sa.String, nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reported_at", sa.DateTime(timezone=True)),
        sa.Column("reported_by", sa.String),
        sa.Column("result", sa.String),
        sa.Column("done_at", sa.DateTime(timezone=True)),
        sa.Column("on_time", sa.Boolean),
    )
    op.create_index("ix_unit_decision_unit_id", "unit_decision", ["unit_id"])


def downgrade() -> None:
    op.drop_table("unit_decision")
