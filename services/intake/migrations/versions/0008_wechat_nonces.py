"""Intake: WeChat callbacks' (timestamp, nonce) remembered within the timestamp window, so
that a signed callback is taken once across replicas (services/intake/wechat_messages.py).

Revision ID: intake_0008_wechat_nonces
Revises: intake_0007_request_digest
"""

import sqlalchemy as sa
from alembic import op

revision = "intake_0008_wechat_nonces"
down_revision = "intake_0007_request_digest"


def upgrade() -> None:
    op.create_table(
        "wechat_nonce",
        sa.Column("signed_at", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("nonce", sa.String, primary_key=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_wechat_nonce_expires_at", "wechat_nonce", ["expires_at"])


def downgrade() -> None:
    op.drop_table("wechat_nonce")
