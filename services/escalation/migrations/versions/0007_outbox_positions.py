"""Escalation: each published event's partition and offset, and each partition's high-water
mark, so that the outbox relay notices when the broker lost events (runtime/outbox.py).

Revision ID: escalation_0007_outbox_positions
Revises: escalation_0006
"""

from services.runtime.migrations import add_outbox_positions, drop_outbox_positions

revision = "escalation_0007_outbox_positions"
down_revision = "escalation_0006"


def upgrade() -> None:
    add_outbox_positions()


def downgrade() -> None:
    drop_outbox_positions()
