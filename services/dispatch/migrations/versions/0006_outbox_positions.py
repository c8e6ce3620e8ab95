"""Dispatch: each published event's partition and offset, and each partition's high-water
mark, so that the outbox relay notices when the broker lost events (runtime/outbox.py).

Revision ID: dispatch_0006_outbox_positions
Revises: dispatch_0005_console
"""

from services.runtime.migrations import add_outbox_positions, drop_outbox_positions

revision = "dispatch_0006_outbox_positions"
down_revision = "dispatch_0005_console"


def upgrade() -> None:
    add_outbox_positions()


def downgrade() -> None:
    drop_outbox_positions()
