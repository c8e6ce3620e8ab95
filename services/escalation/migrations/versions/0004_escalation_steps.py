"""Escalation: the durable ladder steps (warning, overdue, chase 催办, supervise 督办).

Revision ID: escalation_0004
Revises: escalation_0003

Clocks still running when this migration runs get their warning step, so that none of them is
left without a ladder; the scheduler fires the ones already due at once, marked late.
"""

import sqlalchemy as sa
from alembic import op

revision = "escalation_0004"
down_revision = "escalation_0003"


def upgrade() -> None:
    op.create_table(
        "escalation_step",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("deadline_id", sa.BigInteger, sa.ForeignKey("deadline.id"), nullable=False),
        sa.Column("step", sa.String, nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("provisional_reason", sa.String),
        sa.Column("fired_at", sa.DateTime(timezone=True)),
        sa.Column("late_by_seconds", sa.Integer),
        sa.Column("event_id", sa.String),
        sa.Column("cancelled_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("deadline_id", "step"),
    )
    op.create_index(
        "ix_escalation_step_pending",
        "escalation_step",
        ["due_at", "id"],
        postgresql_where=sa.text("fired_at IS NULL AND cancelled_at IS NULL"),
    )
    op.execute(
        "INSERT INTO escalation_step (deadline_id, step, due_at) "
        "SELECT id, 'warning', warn_at FROM deadline WHERE status = 'running'"
    )


def downgrade() -> None:
    op.drop_index("ix_escalation_step_pending", "escalation_step")
    op.drop_table("escalation_step")
