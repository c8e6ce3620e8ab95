"""Dispatch: a case's latest resolution and the 回访 recorded of it, which decide when it may
close (services/dispatch/lifecycle.py), and the unit's first contact with the citizen (联系群众).
A case standing resolved takes its last change as its resolution time.

Revision ID: dispatch_0008_follow_up
Revises: dispatch_0007_admission
"""

import sqlalchemy as sa
from alembic import op

revision = "dispatch_0008_follow_up"
down_revision = "dispatch_0007_admission"

COLUMNS = ("resolved_at", "followed_up_at", "contacted_at")


def upgrade() -> None:
    for name in COLUMNS:
        op.add_column("cases", sa.Column(name, sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE cases SET resolved_at = updated_at WHERE status = 'resolved'")


def downgrade() -> None:
    for name in COLUMNS:
        op.drop_column("cases", name)
