"""Ledger: the Merkle tree's nodes and signed tree heads, both append-only; nodes backfilled.

Revision ID: ledger_0002
Revises: ledger_0001
"""

import sqlalchemy as sa
from alembic import op

from services.ledger.merkle import Frontier

revision = "ledger_0002"
down_revision = "ledger_0001"

BACKFILL_BATCH = 5000


def upgrade() -> None:
    op.create_table(
        "ledger_node",
        sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("index", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "tree_head",
        sa.Column("tree_size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root_hash", sa.LargeBinary, nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
    )
    # The refusal now names the table, since it guards three.
    op.execute(
        """
        CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% is append-only (% refused)', TG_TABLE_NAME, TG_OP;
        END $$
        """
    )
    for table in ("ledger_node", "tree_head"):
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()"
        )
    _backfill_nodes()


def _backfill_nodes() -> None:
    """The tree over the entries recorded before it existed, from the leaf hashes they carry."""
    connection = op.get_bind()
    nodes = sa.table(
        "ledger_node",
        sa.column("level", sa.SmallInteger),
        sa.column("index", sa.BigInteger),
        sa.column("hash", sa.LargeBinary),
    )
    frontier = Frontier()
    pending: list[dict[str, object]] = []
    # Page by page rather than through a server-side cursor: asyncpg keeps a cursor's portal
    # open until the transaction ends, and an open portal on ledger_entry keeps a later
    # migration run in the same transaction from altering the table (ledger_0014).
    page = sa.text(
        "SELECT seq, leaf_hash FROM ledger_entry WHERE seq >= :start ORDER BY seq LIMIT :batch"
    )
    while leaves := connection.execute(
        page, {"start": frontier.size, "batch": BACKFILL_BATCH}
    ).all():
        for seq, leaf in leaves:
            if seq != frontier.size:
                raise RuntimeError(f"ledger_entry has a gap: entry {frontier.size} is missing")
            for (level, index), hash_ in frontier.append(leaf):
                pending.append({"level": level, "index": index, "hash": hash_})
            if len(pending) >= BACKFILL_BATCH:
                connection.execute(nodes.insert(), pending)
                pending = []
    if pending:
        connection.execute(nodes.insert(), pending)


def downgrade() -> None:
    op.execute("DROP TABLE tree_head")
    op.execute("DROP TABLE ledger_node")
    op.execute(
        """
        CREATE OR REPLACE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'ledger entries are append-only (% refused)', TG_OP;
        END $$
        """
    )
