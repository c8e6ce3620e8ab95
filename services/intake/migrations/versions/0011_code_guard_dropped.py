"""Intake: wrong access codes are counted as rate limits like the others (rate_limit, names
wrong_codes/address and wrong_codes/tracking_no), so access_code_guard goes.

Its rows are dropped, not moved: every address and number starts with its whole allowance.

Revision ID: intake_0011_code_guard_dropped
Revises: intake_0010_gcra_rate_limits
"""

import sqlalchemy as sa
from alembic import op

revision = "intake_0011_code_guard_dropped"
down_revision = "intake_0010_gcra_rate_limits"


def upgrade() -> None:
    op.drop_table("access_code_guard")


def downgrade() -> None:
    op.create_table(
        "access_code_guard",
        sa.Column("scope", sa.String, primary_key=True),
        sa.Column("key", sa.String, primary_key=True),
        sa.Column("tat", sa.DateTime(timezone=True), nullable=False, index=True),
    )
