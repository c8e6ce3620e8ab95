"""Intake: stored attachments, citizens' ratings (回访) per resolution, tips joining a case.

Revision ID: intake_0004_attachments_feedback
Revises: intake_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "intake_0004_attachments_feedback"
down_revision = "intake_0003"


def upgrade() -> None:
    op.create_table(
        "attachment",
        sa.Column("sha256", sa.String, primary_key=True),
        sa.Column("content_type", sa.String, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.add_column(
        "tip", sa.Column("joined_case", sa.Boolean, nullable=False, server_default=sa.false())
    )
    op.alter_column("tip", "joined_case", server_default=None)
    op.add_column(
        "tip",
        sa.Column("resolution_round", sa.Integer, nullable=False, server_default=sa.text("0")),
    )
    op.alter_column("tip", "resolution_round", server_default=None)
    # Tips resolved before this revision are in their first resolution.
    op.execute("UPDATE tip SET resolution_round = 1 WHERE status IN ('resolved', 'closed')")
    op.create_table(
        "tip_feedback",
        sa.Column("tip_id", sa.Uuid, sa.ForeignKey("tip.id"), primary_key=True),
        sa.Column("resolution_round", sa.Integer, primary_key=True),
        sa.Column("case_id", sa.Uuid, nullable=False),
        sa.Column("rating", sa.String, nullable=False),
        sa.Column("comment", sa.String),
        sa.Column("rated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("tip_feedback")
    op.drop_column("tip", "resolution_round")
    op.drop_column("tip", "joined_case")
    op.drop_table("attachment")
