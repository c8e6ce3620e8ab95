"""Ledger: each published event's partition and offset, and each partition's high-water
mark, so that the outbox relay notices when the broker lost events (runtime/outbox.py).

Revision ID: ledger_0006_outbox_positions
Revises: ledger_0005
"""

from alembic import op

from services.runtime.migrations import add_outbox_positions, drop_outbox_positions

revision = "ledger_0006_outbox_positions"
down_revision = "ledger_0005"


def upgrade() -> None:
    add_outbox_positions()
    # The writer role (ledger_0005) needs the new table as it needs the outbox.
    op.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON outbox_partition TO whistle_ledger_writer")


def downgrade() -> None:
    drop_outbox_positions()
