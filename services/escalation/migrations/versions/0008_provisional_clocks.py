"""Escalation: find the running provisional clocks without reading every clock.

Counting provisional clocks again (services/escalation/recompute.py) runs at start, after each
calendar reload and at the polls after it until nothing is left; it looks for running clocks
with a ``provisional_reason``, a few among many. The partial index holds only those.

Revision ID: escalation_0008
Revises: escalation_0007_outbox_positions
"""

import sqlalchemy as sa
from alembic import op

revision = "escalation_0008"
down_revision = "escalation_0007_outbox_positions"


def upgrade() -> None:
    op.create_index(
        "ix_deadline_provisional_running",
        "deadline",
        ["id"],
        postgresql_where=sa.text("status = 'running' AND provisional_reason IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_deadline_provisional_running", "deadline")
