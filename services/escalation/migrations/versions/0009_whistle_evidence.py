"""Escalation: the files a summoned department uploads for its reply to a whistle; the reply
may cite only these.

Revision ID: escalation_0009_whistle_evidence
Revises: escalation_0008
"""

import sqlalchemy as sa
from alembic import op

revision = "escalation_0009_whistle_evidence"
down_revision = "escalation_0008"


def upgrade() -> None:
    op.create_table(
        "whistle_evidence",
        sa.Column("whistle_id", sa.Uuid, primary_key=True),
        sa.Column("department_code", sa.String, primary_key=True),
        sa.Column("sha256", sa.String, primary_key=True),
        sa.Column("content_type", sa.String, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("uploaded_by", sa.String, nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("whistle_evidence")
