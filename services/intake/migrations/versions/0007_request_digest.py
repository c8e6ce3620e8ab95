"""Intake: each tip's submission fingerprint, so that a retry's Idempotency-Key is honoured
only for the same body (services/intake/channels.py).

Revision ID: intake_0007_request_digest
Revises: intake_0006_outbox_positions
"""

import sqlalchemy as sa
from alembic import op

revision = "intake_0007_request_digest"
down_revision = "intake_0006_outbox_positions"


def upgrade() -> None:
    op.add_column("tip", sa.Column("request_digest", sa.String, nullable=True))


def downgrade() -> None:
    op.drop_column("tip", "request_digest")
