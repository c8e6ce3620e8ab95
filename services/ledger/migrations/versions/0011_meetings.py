"""Ledger: which cases each joint meeting (联席会议) was convened on (issue #15, item 5).

A meeting's events are keyed by the meeting id; ``ledger_meeting_case`` lets a case's trail
find them, as ``ledger_case_tip`` lets it find its tips' events.

Revision ID: ledger_0011
Revises: ledger_0010_accountability
"""

import sqlalchemy as sa
from alembic import op

revision = "ledger_0011"
down_revision = "ledger_0010_accountability"

ROLE = "whistle_ledger_writer"


def upgrade() -> None:
    op.create_table(
        "ledger_meeting_case",
        sa.Column("meeting_id", sa.Uuid, primary_key=True),
        sa.Column("case_id", sa.Uuid, primary_key=True),
    )
    op.create_index("ix_ledger_meeting_case_case_id", "ledger_meeting_case", ["case_id"])
    # The writer role (ledger_0005) records into it as into ledger_case_tip.
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ledger_meeting_case TO {ROLE}")


def downgrade() -> None:
    op.drop_table("ledger_meeting_case")
