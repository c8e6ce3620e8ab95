"""Ledger: ratings (满意率), whistles and 报到, and chases/supervisions as KPI facts; a tip may
belong to more than one case (merged into one, then split out into another).

Revision ID: ledger_0004
Revises: ledger_0003
"""

import sqlalchemy as sa
from alembic import op

revision = "ledger_0004"
down_revision = "ledger_0003"


def _at(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.drop_constraint("ledger_case_tip_pkey", "ledger_case_tip", type_="primary")
    op.create_primary_key("ledger_case_tip_pkey", "ledger_case_tip", ["tip_id", "case_id"])
    op.create_table(
        "kpi_rating",
        sa.Column("tip_id", sa.Uuid, primary_key=True),
        _at("rated_at", nullable=False),
        sa.Column("case_id", sa.Uuid, nullable=False, index=True),
        sa.Column("rating", sa.String, nullable=False),
    )
    op.create_index("ix_kpi_rating_rated_at", "kpi_rating", ["rated_at"])
    op.create_table(
        "kpi_whistle",
        sa.Column("whistle_id", sa.Uuid, primary_key=True),
        sa.Column("department", sa.String, primary_key=True),
        sa.Column("case_id", sa.Uuid, index=True),
        sa.Column("township", sa.String),
        _at("blown_at"),
        _at("reported_at"),
        sa.Column("report_on_time", sa.Boolean),
        sa.Column("report_latency_seconds", sa.Integer),
        _at("replied_at"),
        sa.Column("reply_on_time", sa.Boolean),
    )
    op.create_table(
        "kpi_ladder",
        sa.Column("event_id", sa.String, primary_key=True),
        sa.Column("case_id", sa.Uuid, nullable=False, index=True),
        sa.Column("step", sa.String, nullable=False),
        sa.Column("clock", sa.String, nullable=False),
        sa.Column("department", sa.String),
        _at("at", nullable=False),
    )
    op.create_index("ix_kpi_ladder_at", "kpi_ladder", ["at"])


def downgrade() -> None:
    for table in ("kpi_ladder", "kpi_whistle", "kpi_rating"):
        op.drop_table(table)
    op.drop_constraint("ledger_case_tip_pkey", "ledger_case_tip", type_="primary")
    op.create_primary_key("ledger_case_tip_pkey", "ledger_case_tip", ["tip_id"])
