"""Ledger: units' inspection tasks (综合查一次, 定岗巡查; issue #15 item 6) as KPI facts — each
task's township, unit and day, when it was completed and how many findings it had — so that
tasks planned, done and missed are counted per township and period.

Revision ID: ledger_0012_inspections
Revises: ledger_0011
"""

import sqlalchemy as sa
from alembic import op

revision = "ledger_0012_inspections"
down_revision = "ledger_0011"

ROLE = "whistle_ledger_writer"


def upgrade() -> None:
    op.create_table(
        "kpi_inspection",
        sa.Column("task_id", sa.Uuid, primary_key=True),
        sa.Column("plan_id", sa.String, nullable=True),
        sa.Column("kind", sa.String, nullable=True),
        sa.Column("township", sa.String, nullable=True),
        sa.Column("unit", sa.String, nullable=True),
        sa.Column("due_on", sa.Date, nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("findings", sa.Integer, nullable=True),
    )
    op.create_index("ix_kpi_inspection_due_on", "kpi_inspection", ["due_on"])
    # The writer role (ledger_0005) needs it as it needs the other KPI facts.
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON kpi_inspection TO {ROLE}")


def downgrade() -> None:
    op.drop_table("kpi_inspection")
