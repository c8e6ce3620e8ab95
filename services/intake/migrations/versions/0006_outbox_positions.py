"""Intake: each published event's partition and offset, and each partition's high-water
mark, so that the outbox relay notices when the broker lost events (runtime/outbox.py).

Revision ID: intake_0006_outbox_positions
Revises: intake_0005_wechat
"""

from services.runtime.migrations import add_outbox_positions, drop_outbox_positions

revision = "intake_0006_outbox_positions"
down_revision = "intake_0005_wechat"


def upgrade() -> None:
    add_outbox_positions()


def downgrade() -> None:
    drop_outbox_positions()
