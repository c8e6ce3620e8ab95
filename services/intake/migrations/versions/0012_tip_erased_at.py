"""Intake: when a tip's personal data was erased at the end of its retention
(services/intake/retention.py); NULL while it is kept.

Revision ID: intake_0012_tip_erased_at
Revises: intake_0011_code_guard_dropped
"""

import sqlalchemy as sa
from alembic import op

revision = "intake_0012_tip_erased_at"
down_revision = "intake_0011_code_guard_dropped"


def upgrade() -> None:
    op.add_column("tip", sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("tip", "erased_at")
