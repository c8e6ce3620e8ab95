"""Intake: what every channel needs — dedupe keys, sealed access codes, hotline urgency,
grid workers' attachments and on-the-spot resolutions.

Revision ID: intake_0002
Revises: intake_0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "intake_0002"
down_revision = "intake_0001"


def upgrade() -> None:
    op.add_column("tip", sa.Column("access_code_sealed", sa.LargeBinary))
    op.add_column("tip", sa.Column("dedupe_key", sa.String))
    op.add_column("tip", sa.Column("urgency_hint", sa.String))
    op.add_column(
        "tip", sa.Column("attachments", JSONB, nullable=False, server_default=sa.text("'[]'"))
    )
    op.alter_column("tip", "attachments", server_default=None)
    op.add_column(
        "tip",
        sa.Column("resolved_on_spot", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.alter_column("tip", "resolved_on_spot", server_default=None)
    op.add_column("tip", sa.Column("resolution_note", sa.String))
    op.create_index(
        "ux_tip_channel_dedupe_key",
        "tip",
        ["channel", "dedupe_key"],
        unique=True,
        postgresql_where=sa.text("dedupe_key IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ux_tip_channel_dedupe_key", table_name="tip")
    for column in (
        "resolution_note",
        "resolved_on_spot",
        "attachments",
        "urgency_hint",
        "dedupe_key",
        "access_code_sealed",
    ):
        op.drop_column("tip", column)
