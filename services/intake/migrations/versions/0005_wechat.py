"""Intake: WeChat messages taken — MsgId for retries, the sender's keyed hash, media refs.

Revision ID: intake_0005_wechat
Revises: intake_0004_attachments_feedback
"""

import sqlalchemy as sa
from alembic import op

revision = "intake_0005_wechat"
down_revision = "intake_0004_attachments_feedback"


def upgrade() -> None:
    op.create_table(
        "wechat_message",
        sa.Column("msg_id", sa.String, primary_key=True),
        sa.Column("openid_hash", sa.String, nullable=False),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("outcome", sa.String, nullable=False),
        sa.Column("tip_id", sa.Uuid, sa.ForeignKey("tip.id"), index=True),
        sa.Column("media_id", sa.String),
        sa.Column("pic_url", sa.String),
        sa.Column("lat", sa.Float),
        sa.Column("lon", sa.Float),
        sa.Column("label", sa.String),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_wechat_message_sender", "wechat_message", ["openid_hash", "received_at"])


def downgrade() -> None:
    op.drop_table("wechat_message")
