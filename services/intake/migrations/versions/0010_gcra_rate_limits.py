"""Intake: rate limits as GCRA, one theoretical arrival time per limit and key, in place of
the fixed windows' counters (services/intake/ratelimit.py).

The old counters are dropped, not converted: every key starts with its whole allowance.

Revision ID: intake_0010_gcra_rate_limits
Revises: intake_0009_access_codes
"""

import sqlalchemy as sa
from alembic import op

revision = "intake_0010_gcra_rate_limits"
down_revision = "intake_0009_access_codes"


def upgrade() -> None:
    op.drop_table("rate_counter")
    op.create_table(
        "rate_limit",
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("key", sa.String, primary_key=True),
        sa.Column("tat", sa.DateTime(timezone=True), nullable=False, index=True),
    )


def downgrade() -> None:
    op.drop_table("rate_limit")
    op.create_table(
        "rate_counter",
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("key", sa.String, primary_key=True),
        sa.Column("window_start", sa.DateTime(timezone=True), primary_key=True, index=True),
        sa.Column("hits", sa.Integer, nullable=False),
    )
