"""Ledger: append-only entries, the log size, case links, outbox and inbox.

Revision ID: ledger_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from services.runtime.migrations import create_runtime_tables

revision = "ledger_0001"
down_revision = None


def upgrade() -> None:
    create_runtime_tables()
    op.create_table(
        "ledger_entry",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("source", sa.String, nullable=False),
        sa.Column("event_id", sa.String, nullable=False),
        sa.Column("type", sa.String, nullable=False),
        sa.Column("subject", sa.String, index=True),
        sa.Column("topic", sa.String, nullable=False),
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("canonical", sa.LargeBinary, nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("source", "event_id"),
    )
    op.create_table(
        "ledger_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO ledger_state (id, size) VALUES (1, 0)")
    op.create_table(
        "ledger_case_tip",
        sa.Column("tip_id", sa.Uuid, primary_key=True),
        sa.Column("case_id", sa.Uuid, nullable=False, index=True),
    )
    # Entries are never changed or removed, not even by the service's own code.
    op.execute(
        """
        CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'ledger entries are append-only (% refused)', TG_OP;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER ledger_entry_append_only BEFORE UPDATE OR DELETE ON ledger_entry "
        "FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()"
    )
    op.execute(
        "CREATE TRIGGER ledger_entry_no_truncate BEFORE TRUNCATE ON ledger_entry "
        "FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()"
    )


def downgrade() -> None:
    op.execute("DROP TABLE ledger_entry")
    op.execute("DROP FUNCTION ledger_refuse_change")
    for table in ("ledger_case_tip", "ledger_state", "inbox", "outbox"):
        op.drop_table(table)
