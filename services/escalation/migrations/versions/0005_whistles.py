"""Escalation: the whistle protocol (吹哨报到) — per-department clocks and the summons.

Revision ID: escalation_0005
Revises: escalation_0004

- ``deadline.whistle_id`` / ``deadline.department_code``: a summoned department's receipt (报到)
  and reply clocks are deadline rows like a case's, climbing the same escalation ladder. A case
  has one clock per kind and round; a whistle has one per department, kind and round. So the
  unique ``(case_id, kind, round)`` now holds for the case's own clocks only (whistle_id null),
  and ``(whistle_id, department_code, kind, round)`` for whistle clocks.
- ``whistle_summons``: one row per whistle and summoned department — why it was summoned, and
  what the department answered (receipt number, result).
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "escalation_0005"
down_revision = "escalation_0004"


def upgrade() -> None:
    op.add_column("deadline", sa.Column("whistle_id", UUID(as_uuid=True)))
    op.add_column("deadline", sa.Column("department_code", sa.String))
    op.drop_constraint("deadline_case_id_kind_round_key", "deadline", type_="unique")
    op.create_index(
        "ux_deadline_case_clock",
        "deadline",
        ["case_id", "kind", "round"],
        unique=True,
        postgresql_where=sa.text("whistle_id IS NULL"),
    )
    op.create_index(
        "ux_deadline_whistle_clock",
        "deadline",
        ["whistle_id", "department_code", "kind", "round"],
        unique=True,
        postgresql_where=sa.text("whistle_id IS NOT NULL"),
    )
    op.create_table(
        "whistle_summons",
        sa.Column("whistle_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("department_code", sa.String, primary_key=True),
        sa.Column("case_id", UUID(as_uuid=True), nullable=False, index=True),
        sa.Column("township_code", sa.String),
        sa.Column("matter_code", sa.String),
        sa.Column("reason_code", sa.String, nullable=False),
        sa.Column("reason", sa.String, nullable=False),
        sa.Column("urgency", sa.String, nullable=False),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("receipt_no", sa.String),
        sa.Column("reported_at", sa.DateTime(timezone=True)),
        sa.Column("reported_by", sa.String),
        sa.Column("result", sa.String),
        sa.Column("evidence", JSONB),
        sa.Column("replied_at", sa.DateTime(timezone=True)),
        sa.Column("replied_by", sa.String),
    )
    op.create_index(
        "ix_whistle_summons_open",
        "whistle_summons",
        ["department_code", "notified_at"],
        postgresql_where=sa.text("replied_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_whistle_summons_open", "whistle_summons")
    op.drop_table("whistle_summons")
    op.drop_index("ux_deadline_whistle_clock", "deadline")
    op.drop_index("ux_deadline_case_clock", "deadline")
    op.execute(
        "DELETE FROM escalation_step WHERE deadline_id IN "
        "(SELECT id FROM deadline WHERE whistle_id IS NOT NULL)"
    )
    op.execute("DELETE FROM deadline WHERE whistle_id IS NOT NULL")
    op.create_unique_constraint(
        "deadline_case_id_kind_round_key", "deadline", ["case_id", "kind", "round"]
    )
    op.drop_column("deadline", "department_code")
    op.drop_column("deadline", "whistle_id")
