"""Ledger: each tip's key, under which its events' personal fields are sealed (crypto-shredding,
issue #20). Outside the append-only log on purpose: erasing a tip deletes its row, which leaves
the sealed fields in ``ledger_entry`` unreadable for good while every hash still matches.

Revision ID: ledger_0007_tip_keys
Revises: ledger_0006_outbox_positions

The writer role may create, read and destroy a key — never change one (UPDATE would let the
service re-key a tip and lose what was sealed under the old key without an erasure entry).
"""

import sqlalchemy as sa
from alembic import op

revision = "ledger_0007_tip_keys"
down_revision = "ledger_0006_outbox_positions"


def upgrade() -> None:
    op.create_table(
        "ledger_tip_key",
        sa.Column("tip_id", sa.Uuid, primary_key=True),
        sa.Column("key", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.execute("GRANT SELECT, INSERT, DELETE ON ledger_tip_key TO whistle_ledger_writer")


def downgrade() -> None:
    op.drop_table("ledger_tip_key")
