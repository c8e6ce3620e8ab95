"""Intake: 回访 on every channel. A rating keeps the channel it was taken by, the hotline
operator who recorded it and the call id or WeChat MsgId it came from (a retry finds it); a
follow-up call that could not reach the citizen is kept by its call id.

Revision ID: intake_0013_follow_up
Revises: intake_0012_tip_erased_at
"""

import sqlalchemy as sa
from alembic import op

revision = "intake_0013_follow_up"
down_revision = "intake_0012_tip_erased_at"


def upgrade() -> None:
    # Every rating before this one came from the citizen page.
    op.add_column(
        "tip_feedback", sa.Column("channel", sa.String, nullable=False, server_default="web")
    )
    op.alter_column("tip_feedback", "channel", server_default=None)
    op.add_column("tip_feedback", sa.Column("recorded_by", sa.String, nullable=True))
    op.add_column("tip_feedback", sa.Column("external_ref", sa.String, nullable=True))
    op.create_index(
        "ux_tip_feedback_channel_ref",
        "tip_feedback",
        ["channel", "external_ref"],
        unique=True,
        postgresql_where=sa.text("external_ref IS NOT NULL"),
    )
    op.create_table(
        "follow_up_attempt",
        sa.Column("call_id", sa.String, primary_key=True),
        sa.Column("tip_id", sa.Uuid, sa.ForeignKey("tip.id"), nullable=False),
        sa.Column("resolution_round", sa.Integer, nullable=False),
        sa.Column("recorded_by", sa.String, nullable=False),
        sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_follow_up_attempt_tip_id", "follow_up_attempt", ["tip_id"])


def downgrade() -> None:
    op.drop_table("follow_up_attempt")
    op.drop_index("ux_tip_feedback_channel_ref", table_name="tip_feedback")
    for name in ("external_ref", "recorded_by", "channel"):
        op.drop_column("tip_feedback", name)
