"""Dispatch: count rejections (退单), which send a case to county arbitration the second time.

Revision ID: dispatch_0002
Revises: dispatch_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "dispatch_0002"
down_revision = "dispatch_0001"


def upgrade() -> None:
    op.add_column("cases", sa.Column("rejections", sa.Integer, nullable=False, server_default="0"))
    op.alter_column("cases", "rejections", server_default=None)


def downgrade() -> None:
    op.drop_column("cases", "rejections")
