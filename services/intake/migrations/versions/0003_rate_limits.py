"""Intake: rate-limit counters shared by every replica.

Revision ID: intake_0003
Revises: intake_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "intake_0003"
down_revision = "intake_0002"


def upgrade() -> None:
    op.create_table(
        "rate_counter",
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("key", sa.String, primary_key=True),
        sa.Column("window_start", sa.DateTime(timezone=True), primary_key=True, index=True),
        sa.Column("hits", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rate_counter")
