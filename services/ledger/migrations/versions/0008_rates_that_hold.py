"""Ledger: the facts of 三率 that hold (issue #15). A case's first contact with the citizen
(联系群众, 响应率); each rating's channel; 回访 calls that reached nobody; each summoned
department's receipt and reply deadlines, so that a summons never answered counts.

Revision ID: ledger_0008_rates
Revises: ledger_0007_tip_keys
"""

import sqlalchemy as sa
from alembic import op

revision = "ledger_0008_rates"
down_revision = "ledger_0007_tip_keys"

ROLE = "whistle_ledger_writer"


def _at(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.add_column("kpi_case", _at("first_contacted_at"))
    op.add_column("kpi_rating", sa.Column("channel", sa.String, nullable=True))
    op.add_column("kpi_whistle", _at("receipt_due_at"))
    op.add_column("kpi_whistle", _at("reply_due_at"))
    op.create_table(
        "kpi_follow_up_miss",
        sa.Column("call_id", sa.String, primary_key=True),
        sa.Column("tip_id", sa.Uuid, nullable=False),
        sa.Column("case_id", sa.Uuid, nullable=False),
        _at("at", nullable=False),
    )
    op.create_index("ix_kpi_follow_up_miss_case_id", "kpi_follow_up_miss", ["case_id"])
    op.create_index("ix_kpi_follow_up_miss_at", "kpi_follow_up_miss", ["at"])
    # The writer role (ledger_0005) needs the new table as it needs the other KPI facts.
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON kpi_follow_up_miss TO {ROLE}")


def downgrade() -> None:
    op.drop_table("kpi_follow_up_miss")
    op.drop_column("kpi_whistle", "reply_due_at")
    op.drop_column("kpi_whistle", "receipt_due_at")
    op.drop_column("kpi_rating", "channel")
    op.drop_column("kpi_case", "first_contacted_at")
