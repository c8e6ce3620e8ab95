"""Escalation: mark deadlines counted without a calendar for their year.

Revision ID: escalation_0002
Revises: escalation_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "escalation_0002"
down_revision = "escalation_0001"


def upgrade() -> None:
    op.add_column("deadline", sa.Column("provisional_reason", sa.String))


def downgrade() -> None:
    op.drop_column("deadline", "provisional_reason")
