"""Escalation: the township's joint meeting (联席会议, issue #15, item 5).

Revision ID: escalation_0010
Revises: escalation_0009_whistle_evidence

- ``meeting``: a joint meeting convened by a township — date, place, departments summoned,
  agenda, the cases and overdue whistles referred to it — and, once held, who attended and
  its minutes (会议纪要).
- ``meeting_decision``: each decision (议定事项) with its owner (a department or a township
  unit), task and due time, and the owner's report of it done.
- ``deadline.decision_id``: a decision's clock is a deadline row like a whistle's, climbing
  the same ladder. A case may have several decisions, so the case's own clocks are unique per
  ``(case_id, kind, round)`` only where neither a whistle nor a decision is set, and a decision
  has one clock.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "escalation_0010"
down_revision = "escalation_0009_whistle_evidence"


def upgrade() -> None:
    op.add_column("deadline", sa.Column("decision_id", UUID(as_uuid=True)))
    op.drop_index("ux_deadline_case_clock", "deadline")
    op.create_index(
        "ux_deadline_case_clock",
        "deadline",
        ["case_id", "kind", "round"],
        unique=True,
        postgresql_where=sa.text("whistle_id IS NULL AND decision_id IS NULL"),
    )
    op.create_index(
        "ux_deadline_decision_clock",
        "deadline",
        ["decision_id"],
        unique=True,
        postgresql_where=sa.text("decision_id IS NOT NULL"),
    )
    op.create_table(
        "meeting",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("township_code", sa.String, nullable=False),
        sa.Column("held_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("place", sa.String, nullable=False),
        sa.Column("departments", JSONB, nullable=False),
        sa.Column("agenda", JSONB, nullable=False),
        sa.Column("case_ids", JSONB, nullable=False),
        sa.Column("whistle_ids", JSONB, nullable=False),
        sa.Column("convened_by", sa.String, nullable=False),
        sa.Column("convened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attended", JSONB),
        sa.Column("minutes", sa.String),
        sa.Column("minutes_recorded_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_meeting_township_code", "meeting", ["township_code"])
    op.create_table(
        "meeting_decision",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("meeting_id", UUID(as_uuid=True), sa.ForeignKey("meeting.id"), nullable=False),
        sa.Column("case_id", UUID(as_uuid=True), nullable=False),
        sa.Column("township_code", sa.String, nullable=False),
        sa.Column("owner_kind", sa.String, nullable=False),
        sa.Column("owner_code", sa.String, nullable=False),
        sa.Column("task", sa.String, nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("result", sa.String),
        sa.Column("evidence", JSONB),
        sa.Column("done_at", sa.DateTime(timezone=True)),
        sa.Column("done_by", sa.String),
    )
    op.create_index("ix_meeting_decision_meeting_id", "meeting_decision", ["meeting_id"])
    op.create_index("ix_meeting_decision_owner", "meeting_decision", ["owner_kind", "owner_code"])


def downgrade() -> None:
    op.drop_table("meeting_decision")
    op.drop_table("meeting")
    op.drop_index("ux_deadline_decision_clock", "deadline")
    op.drop_index("ux_deadline_case_clock", "deadline")
    op.execute(
        "DELETE FROM escalation_step WHERE deadline_id IN "
        "(SELECT id FROM deadline WHERE decision_id IS NOT NULL)"
    )
    op.execute("DELETE FROM deadline WHERE decision_id IS NOT NULL")
    op.create_index(
        "ux_deadline_case_clock",
        "deadline",
        ["case_id", "kind", "round"],
        unique=True,
        postgresql_where=sa.text("whistle_id IS NULL"),
    )
    op.drop_column("deadline", "decision_id")
