"""Ledger: liability both ways (issue #15, item 3). A case's first report — when the tip it was
opened for was received — so the township's discovery latency (发现时效) can be counted; cases
recorded before this revision get it from their tip's facts.

Revision ID: ledger_0010_discovery
Revises: ledger_0008_rates
"""

import sqlalchemy as sa
from alembic import op

revision = "ledger_0010_discovery"
down_revision = "ledger_0008_rates"


def upgrade() -> None:
    op.add_column("kpi_case", sa.Column("reported_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE kpi_case SET reported_at = kpi_tip.received_at "
        "FROM kpi_tip WHERE kpi_case.tip_id = kpi_tip.tip_id"
    )


def downgrade() -> None:
    op.drop_column("kpi_case", "reported_at")
