"""Escalation: clocks stop (met or late) and a reopened case starts a new round.

Revision ID: escalation_0003
Revises: escalation_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "escalation_0003"
down_revision = "escalation_0002"


def upgrade() -> None:
    op.add_column("deadline", sa.Column("round", sa.Integer, nullable=False, server_default="1"))
    op.alter_column("deadline", "round", server_default=None)
    op.add_column("deadline", sa.Column("stopped_at", sa.DateTime(timezone=True)))
    op.add_column("deadline", sa.Column("late_by_seconds", sa.Integer))
    op.drop_constraint("deadline_case_id_kind_key", "deadline", type_="unique")
    op.create_unique_constraint(
        "deadline_case_id_kind_round_key", "deadline", ["case_id", "kind", "round"]
    )


def downgrade() -> None:
    op.drop_constraint("deadline_case_id_kind_round_key", "deadline", type_="unique")
    op.create_unique_constraint("deadline_case_id_kind_key", "deadline", ["case_id", "kind"])
    for column in ("late_by_seconds", "stopped_at", "round"):
        op.drop_column("deadline", column)
